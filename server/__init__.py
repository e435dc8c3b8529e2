"""The central server: aiohttp app, REST API, provider adapters, scheduler and CLI."""
