"""Kiswahili for the console's reconciliation pages."""

SW: dict[str, str] = {}
