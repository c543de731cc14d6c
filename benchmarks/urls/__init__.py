"""``citysight bench urls``: the camera URL policy on hostile input."""
