"""Rules-layer throughput and latency benchmark (``citysight bench rules``)."""
