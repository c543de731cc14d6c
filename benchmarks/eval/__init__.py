"""Detector accuracy on labelled sets (``citysight eval``), scored as the shared README says."""
