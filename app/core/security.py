"""Bearer tokens: random, shown once, stored as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "sl_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # The token carries 256 random bits, so a plain digest cannot be brute-forced; a slow KDF
    # would only add latency to every request.
    return hashlib.sha256(token.encode()).hexdigest()
