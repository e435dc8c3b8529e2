"""Bearer tokens for the REST API."""
