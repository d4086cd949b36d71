"""API keys: how they are made and the form in which they are stored."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["hash_key", "new_key"]


def hash_key(key: str) -> str:
    """The stored form of an API key: SHA-256, hex (keys are random, not passwords)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A new random API key."""
    return "ofk_" + secrets.token_urlsafe(32)
