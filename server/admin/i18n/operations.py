"""Kiswahili for the console's operations pages."""

SW: dict[str, str] = {}
