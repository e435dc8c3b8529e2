"""Kiswahili for the console's content pages."""

SW: dict[str, str] = {}
