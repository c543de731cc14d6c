"""``citysight bench metrics``: cost of a GET /metrics scrape at city scale."""
