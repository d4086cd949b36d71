"""Where a process runs: App Engine, Cloud Run, another host, or a developer's machine.

The answer decides which request headers may be trusted: App Engine's front end strips
``X-AppEngine-*`` (task, cron and request-log headers) from outside requests, so only
there do they prove anything. Nothing strips them on Cloud Run, Kubernetes or a VM.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["APP_ENGINE", "CLOUD_RUN", "LOCAL", "OTHER_HOST", "detect_platform"]

APP_ENGINE = "appengine"
CLOUD_RUN = "cloudrun"
OTHER_HOST = "hosted"
LOCAL = "local"

# Variables that the platforms set in every instance's environment.
_OTHER_HOST_MARKERS = (
    "KUBERNETES_SERVICE_HOST",  # GKE and any Kubernetes
    "FUNCTION_TARGET",  # Cloud Functions
    "CLOUD_RUN_JOB",  # Cloud Run jobs
    "GAE_ENV",  # App Engine flexible ("flex"): its front end is not the standard one
)


def detect_platform(env: Mapping[str, str]) -> str:
    """``appengine`` (standard), ``cloudrun``, ``hosted`` (another known host) or ``local``."""
    if env.get("GAE_ENV", "").startswith("standard"):
        return APP_ENGINE
    if env.get("K_SERVICE"):
        return CLOUD_RUN
    if any(env.get(name) for name in _OTHER_HOST_MARKERS):
        return OTHER_HOST
    return LOCAL
