"""Triton backend: local server, model-repo python models, client and model installer."""
