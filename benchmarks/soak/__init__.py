"""Soak of the default path: the README's demo under load and faults (``citysight bench soak``)."""
