"""The error responses every route may give, documented once so the OpenAPI schema tells clients
(and schemathesis) the truth: every 4xx/5xx body is `{"detail": ...}`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorMessage(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong: a sentence, or FastAPI's list of validation errors (loc, msg, type)."
    )


_WHY = {
    400: "Malformed request.",
    401: "Missing, invalid, expired or revoked token.",
    403: "Signed in, but the role or project membership does not allow this.",
    404: "No such object, or not one of your projects'.",
    409: "Conflicts with the current state (an open round, a label by someone else, a duplicate).",
    413: "The body is larger than the limit for this route.",
    422: "The body, path or query does not validate.",
    429: "Too many failed authentications from this address; see Retry-After.",
    503: "The database or task queue is unavailable; retry later.",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorMessage, "description": why} for code, why in _WHY.items()
}
