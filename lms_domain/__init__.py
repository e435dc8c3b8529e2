"""Somo's domain: models and use cases, free of HTTP, USSD, vendors and settings."""
