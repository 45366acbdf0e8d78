"""Rate limiting of authentication failures per client address, with the maintained `limits` library.

The count lives in Redis when the broker is Redis (every API process shares it), else in this
process's memory (the embedded mode runs one API process).
"""

from __future__ import annotations

import logging
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.core.settings import get_settings

log = logging.getLogger("suggestlab.api")


@lru_cache
def _limiter() -> tuple[FixedWindowRateLimiter, RateLimitItem]:
    settings = get_settings()
    uri = settings.broker_url if settings.broker_url.startswith("redis") else "memory://"
    return FixedWindowRateLimiter(storage_from_string(uri)), parse(settings.auth_failure_limit)


def blocked(client: str) -> int | None:
    """Seconds until `client` may try again, or None when it is under the limit. A limiter outage
    never locks anyone out (it is logged)."""
    try:
        limiter, item = _limiter()
        if limiter.test(item, "auth-failure", client):
            return None
        reset, _ = limiter.get_window_stats(item, "auth-failure", client)
        import time

        return max(1, int(reset - time.time()))
    except Exception:
        log.warning("rate limiter unavailable", exc_info=True)
        return None


def failed(client: str) -> None:
    try:
        limiter, item = _limiter()
        limiter.hit(item, "auth-failure", client)
    except Exception:
        log.warning("rate limiter unavailable", exc_info=True)
