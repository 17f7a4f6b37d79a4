"""Bundled experiment protocols. Each ``name.py`` is runnable as ``cybloid run name``."""
