"""Feed cursors: opaque strings naming a position in the caller's feed."""

from __future__ import annotations

import base64
import binascii

from graphql_api.errors import BadUserInput

PREFIX = "feed:"


def encode(seq: int) -> str:
    """The cursor of position `seq` (0: before the first change)."""
    return base64.urlsafe_b64encode(f"{PREFIX}{seq}".encode()).decode()


def decode(cursor: str) -> int:
    """The position a cursor names; BAD_USER_INPUT (field `since`) if it is not a feed cursor.
    A position only means something in the caller's own feed: there is nothing else to it."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    digits = text.removeprefix(PREFIX)
    if not text.startswith(PREFIX) or not digits.isascii() or not digits.isdigit():
        raise BadUserInput("`since` is not a cursor of the change feed.", field="since")
    if len(digits) > 19:  # beyond BIGINT: no feed gets there
        raise BadUserInput("`since` is not a cursor of the change feed.", field="since")
    return int(digits)
