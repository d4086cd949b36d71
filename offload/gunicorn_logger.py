"""gunicorn's logger, sending its lines through the process's structured log handlers."""

from __future__ import annotations

from typing import Any

from gunicorn import glogging

from offload.logs import configure_logging_from
from offload.settings import load_settings

__all__ = ["Logger"]


class Logger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's error log as Cloud Logging JSON lines; its access log off (the app logs it)."""

    def setup(self, cfg: Any) -> None:
        """Configure this process's logging once, then route gunicorn's logger through it."""
        super().setup(cfg)
        configure_logging_from(cfg.proc_name or "gunicorn", load_settings())
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
        self.error_log.propagate = True
        self.access_log.propagate = False
        self.access_log.disabled = True
