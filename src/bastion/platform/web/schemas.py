"""What every JSON API body and route shares: strict request bodies, the one error body,
the bounds of ids, and the error answers an operation declares in the schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_ID = 2**63 - 1
"""The largest row id the databases hold (a signed 64-bit integer)."""


class Strict(BaseModel):
    """A request body: unknown fields are refused, and so is a value of the wrong JSON type
    (`{"disabled": 0}` is not a boolean, `"3"` is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def whole(value: Any) -> Any:
    """JSON Schema counts 76.0 as an integer; so does the API (3.5, "3" and true are not)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(whole)]
"""An integer in a strict body."""

LaxDatetime = Annotated[datetime, Field(strict=False)]
"""A time in a strict body: JSON has no time type, so it comes as RFC 3339 text."""

PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
"""Text without control characters (PostgreSQL refuses NUL in text)."""

RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="The id as listed")]
"""An id in a path; out of range it is refused (422) before any database sees it."""


def bounded_query(default: int, low: int, high: int, description: str) -> Any:
    """An integer query parameter with its range, so that 2^63 is a 422, not a crash."""
    return Query(default, ge=low, le=high, description=description)


class ErrorDetail(BaseModel):
    type: str = Field(description="The kind of error, e.g. InvalidInputError, NotFoundError")
    message: str = Field(description="What happened and what to do, for an administrator")


class ErrorBody(BaseModel):
    """Every error answer of the API has this body, whatever its status."""

    error: ErrorDetail


ERROR_MEANINGS = {
    400: "The request was refused: the message says what was wrong. Nothing was changed.",
    401: "No credentials, or credentials that are not valid (any more). A bearer token comes "
    "from POST /api/v1/oauth/token.",
    403: "The credentials may not do this.",
    404: "Nothing with this id or name; list them first.",
    405: "The path does not take this method; the Allow header lists those it takes.",
    409: "The request conflicts with the appliance's state; the message says how to resolve it.",
    422: "A parameter or a field of the body is missing, of the wrong type or out of range.",
    429: "Too many attempts or too much load; wait for Retry-After seconds.",
    500: "The appliance failed; nothing was changed. The appliance's log has the details.",
    503: "Changes are paused for a moment (an install is under way) or a part is unavailable; "
    "retry after Retry-After seconds.",
}


def errors(*statuses: int, **reasons: str) -> dict[int | str, dict[str, Any]]:
    """Error answers for an operation's `responses`; `reasons` (e.g. ``e400="..."``) say
    why this operation gives a status, beyond its general meaning."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        why = reasons.get(f"e{status}")
        meaning = ERROR_MEANINGS[status] + (f" Here: {why}" if why else "")
        answers[status] = {"model": ErrorBody, "description": meaning}
    return answers
