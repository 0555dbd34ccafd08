"""Which HTTP status each service error gets, for the API and the pages alike."""

from __future__ import annotations

from bastion.platform import errors

STATUS: dict[type[errors.ServiceError], int] = {
    errors.InvalidInputError: 400,
    errors.AuthenticationError: 401,
    errors.PermissionDeniedError: 403,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.ThrottledError: 429,
    errors.UnavailableError: 503,
}


def status_of(error: errors.ServiceError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)
