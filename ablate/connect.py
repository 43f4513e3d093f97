"""Light helpers used before anything heavy is imported: secret redaction, server reachability.

``ablate train`` checks a tracking server here first, so an unreachable one fails the command
in seconds, before torch and TRL are even imported.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

SECRET = re.compile(r"token|password|passwd|secret|api[_-]?key|credential", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]+):([^@/\s]+)@")
REDACTED = "***"


def redact(value: Any, key: str = "") -> Any:
    """Secrets out of anything that gets logged: secret-named keys and passwords inside URLs."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if SECRET.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\1:{REDACTED}@", value)
    return value


def is_server(uri: str) -> bool:
    """A tracking URI of an MLflow server (HTTP), not a local store."""
    return uri.startswith(("http://", "https://"))


def check_reachable(uri: str, timeout_s: float) -> None:
    """Fail fast, naming the URI, when an HTTP tracking server does not answer."""
    if not is_server(uri):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(
            f"MLflow tracking server {redact(uri)} is not reachable ({reason}); "
            "start it, fix tracking.uri / MLFLOW_TRACKING_URI, or use tracking=local"
        ) from None
