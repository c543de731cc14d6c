"""Camera ingest: supervised readers, cross-camera mux, stream workers and their supervisor."""
