"""Offline sync protocol shared by the central server and edge nodes (transport-free core)."""
