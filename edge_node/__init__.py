"""The school edge node: the learning API on SQLite, syncing with the central server."""
