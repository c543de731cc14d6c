"""locust benchmark package."""
