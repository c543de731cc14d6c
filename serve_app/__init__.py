"""The Ray Serve application: rules, alert store and dispatch, API and WebSocket feed."""
