"""Peers measured beside Offload: code that runs in their own virtual environments."""
