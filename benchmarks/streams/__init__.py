"""Streams-per-core benchmark: paced real footage through decode, sampling and the mux."""
