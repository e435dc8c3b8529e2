"""Kiswahili for the console's money pages."""

SW: dict[str, str] = {}
