"""Names an administrator types (an API client's name, a display name): what is allowed,
said once for the services and, as a pattern, for the API's schema."""

from __future__ import annotations

import unicodedata

from bastion.platform.errors import InvalidInputError

NAME_PATTERN = r"^ *[^\x00-\x20\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
"""No control character, and something besides spaces (JSON Schema and Python alike)."""


def clean_name(text: str, what: str, max_length: int) -> str:
    """`text` without its leading and trailing spaces, or why it cannot be a name."""
    name = text.strip(" ")
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InvalidInputError(f"{what} may not hold control characters (tabs, line breaks).")
    if not 1 <= len(name) <= max_length:
        raise InvalidInputError(f"Give {what} of 1 to {max_length} characters.")
    return name
