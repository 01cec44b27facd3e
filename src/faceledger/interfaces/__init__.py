"""Thin interfaces over the engine and the gallery: the command line and the REST service."""
