"""The token every form carries, so that a change cannot be posted from another site."""

from __future__ import annotations

import secrets

CSRF_COOKIE = "bastion_csrf"
"""Before sign-in, the form's token is also in this cookie; after, the session holds it."""
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class CsrfError(Exception):
    """A form arrived without the token this site put in it."""


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)
