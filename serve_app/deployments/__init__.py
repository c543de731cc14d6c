"""Ray Serve deployments of the serve_app."""
