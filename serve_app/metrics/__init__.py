"""Prometheus exposition of citysight: replica-local and city-wide (Redis) metrics."""
