"""A real multi-host cluster on one machine (network namespaces): Ray + Redis HA.

See docs/cluster.md. ``python -m benchmarks.cluster.cli up`` builds it (as root).
"""
