"""The console's session cookie: Flask's signed cookie, only under ``/console``.

The cookie holds the principal (name and role), the CSRF token and flash messages,
never an API key. It is signed with ``OFFLOAD_CONSOLE_SECRET_KEY``; locally, when that is
empty, with a key kept in ``OFFLOAD_CONSOLE_SECRET_KEY_FILE`` (made on the first console
request), so sessions survive restarts and are shared by every gunicorn process.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from offload.errors import ConfigError
from offload.flaskapp import get_settings
from web.console.blueprint import PREFIX

__all__ = ["ConsoleSessions", "init_app", "load_or_make_key"]

SESSION_LIFETIME = dt.timedelta(hours=12)
_MIN_KEY_CHARS = 32


def load_or_make_key(path: Path) -> str:
    """The key in ``path``; made there first (mode 0600, atomically) when missing."""
    for _ in range(50):
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            key = ""
        if key:
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        try:
            # link() fails if another process made the file first: then its key wins.
            os.link(tmp, path)
        except FileExistsError:
            time.sleep(0.01)
        finally:
            tmp.unlink()
    raise ConfigError(f"cannot read the console's session key from {path}")


class ConsoleSessions(SecureCookieSessionInterface):
    """Sessions for console paths only; the key is read when first needed."""

    def __init__(self, secret: str, key_file: str) -> None:
        self._secret = secret
        self._key_file = Path(key_file)
        self._lock = threading.Lock()

    def _key(self) -> str:
        with self._lock:
            if not self._secret:
                self._secret = load_or_make_key(self._key_file)
            return self._secret

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Flask's serializer, with the console's key."""
        return URLSafeTimedSerializer(
            self._key(),
            salt=self.salt,
            serializer=self.serializer,
            signer_kwargs={
                "key_derivation": self.key_derivation,
                "digest_method": self.digest_method,
            },
        )

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """The console's session; the API's requests get none (they never need one)."""
        if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
            return None  # Flask makes a null session: the API stays stateless
        if request.path.startswith(PREFIX + "/static/"):
            return None
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Cookie settings and the session interface of the console."""
    settings = get_settings(app)
    secret = settings.console_secret_key.get_secret_value()
    if settings.hosted and settings.api_auth in ("api_key", "iap") and not secret:
        raise ConfigError(
            "the console needs OFFLOAD_CONSOLE_SECRET_KEY on App Engine and Cloud Run "
            "(a random string of 32+ characters, from Secret Manager)"
        )
    if secret and len(secret) < _MIN_KEY_CHARS:
        raise ConfigError(f"OFFLOAD_CONSOLE_SECRET_KEY must have {_MIN_KEY_CHARS}+ characters")
    cookie: dict[str, Any] = {
        "SESSION_COOKIE_NAME": "offload_console",
        "SESSION_COOKIE_PATH": PREFIX,
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Strict",
        "PERMANENT_SESSION_LIFETIME": SESSION_LIFETIME,
    }
    app.config.update(cookie)
    app.session_interface = ConsoleSessions(secret, settings.console_secret_key_file)
