"""Kiswahili for the console's people pages."""

SW: dict[str, str] = {}
