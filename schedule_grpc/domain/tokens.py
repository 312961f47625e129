"""Opaque page tokens. A token names the last item of the page and the listing it belongs to."""

from __future__ import annotations

import base64
import binascii
import json

from schedule_grpc.domain.errors import InvalidArgument

# Our tokens are well under this; a longer one (or deeply nested JSON inside) is refused before decoding.
MAX_TOKEN_CHARS = 2048


def encode(listing: str, after: str) -> str:
    raw = json.dumps({"l": listing, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, listing: str) -> str | None:
    """The key to continue after, or None for the first page; INVALID_ARGUMENT for a bad token."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidArgument("page_token", "is not a token returned by this listing (too long)")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
        if not isinstance(value, dict) or value.get("l") != listing or not isinstance(value.get("a"), str):
            raise ValueError(token)
        return str(value["a"])
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError) as error:
        raise InvalidArgument("page_token", "is not a token returned by this listing") from error
