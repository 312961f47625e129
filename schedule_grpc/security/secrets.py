"""Secrets in task metadata: write-only values, and references to operator-provided files.

A task's metadata may carry credentials (an ``Authorization`` header, the grpc handler's
``bearerToken``, a password in a URL, ``?api_key=``). They are stored and used at execution, but
every surface that shows metadata or text derived from an execution goes through this module:

- ``redact(metadata)``: the metadata as shown to anyone (RPC answers, the HTTP shim, the status
  page), each credential replaced by ``REDACTED`` so a reader can tell a value is set;
- ``scrub_outcome(outcome, metadata, directory)``: an attempt's error, result and traceback with
  every secret value of the task replaced, applied where the executor records an outcome;
- ``scrub_text(text)``: credentials recognisable by their shape (URL user-info, credential query
  parameters, ``Bearer`` tokens), for logs and alert emails.

Secret references are the preferred way: wherever a handler takes a string, the metadata may give
``{"secretRef": "billing-token"}`` (optionally with ``"prefix": "Bearer "``) instead. The value is read
at execution from the file ``billing-token`` in SCHEDULE_SECRETS_DIR (a Kubernetes secret volume fits),
so the caller never sends it and a rotated file is used by the next execution.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from schedule_grpc.domain.errors import HandlerFailed, InvalidArgument
from schedule_grpc.domain.models import JSON, ErrorCategory, Outcome

REDACTED = "<redacted>"
REF_KEY = "secretRef"
PREFIX_KEY = "prefix"
# Metadata keys and header names whose values are credentials.
_SECRET_NAME = re.compile(
    r"pass(word|wd)?|secret|token|api[-_]?key|auth(?!ors?(?![a-z]))|credential|cookie|session[-_]?id|private[-_]?key|signature",
    re.IGNORECASE,
)
# Query parameters whose values are credentials (besides names matching _SECRET_NAME).
_SECRET_PARAMS = frozenset({"key", "sig", "code", "apikey", "access_token", "client_secret", "x-amz-signature"})
_REF_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
# Shapes of credentials in free text: user-info of a URL, credential query parameters, bearer tokens.
_URL_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,31}://)(?P<userinfo>[^/\s@?#]{1,512})@"
)
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;](?P<name>[A-Za-z0-9_.\-]+)=)(?P<value>[^&#\s\"'<>]+)")
_BEARER = re.compile(r"(?P<lead>\bBearer\s+)(?P<value>[A-Za-z0-9._~+/=\-]{8,})", re.IGNORECASE)
# Values shorter than this are not scrubbed from text by value (they would mangle unrelated words).
_MIN_SCRUB_LENGTH = 4


class SecretUnavailable(HandlerFailed):
    """A referenced secret cannot be read; the attempt fails with the POLICY category."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCategory.POLICY)


@functools.lru_cache(maxsize=4096)  # metadata keys repeat across tasks: listings convert thousands
def is_secret_name(name: str) -> bool:
    """Whether a metadata key or header name carries a credential."""
    return bool(_SECRET_NAME.search(name))


def is_reference(value: Any) -> bool:
    """Whether ``value`` is a secret reference: ``{"secretRef": name}`` with an optional ``prefix``."""
    return (
        isinstance(value, dict)
        and isinstance(value.get(REF_KEY), str)
        and set(value) <= {REF_KEY, PREFIX_KEY}
        and isinstance(value.get(PREFIX_KEY, ""), str)
    )


# --- what callers see -------------------------------------------------------------------------


def redact(metadata: Mapping[str, JSON]) -> dict[str, JSON]:
    """The metadata with every credential value replaced by REDACTED (references are shown as they are)."""
    return {key: _redact(value, secret=is_secret_name(key)) for key, value in metadata.items()}


def _redact(value: JSON, *, secret: bool) -> JSON:
    if is_reference(value):
        return value
    if isinstance(value, dict):
        return {k: _redact(v, secret=secret or is_secret_name(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secret=secret) for v in value]
    if isinstance(value, str):
        if secret and value:
            return REDACTED
        return redact_url(value)
    return value  # numbers and booleans are settings, not credentials (maxTokens: 512)


def redact_url(text: str) -> str:
    """A URL with its user-info and credential query parameters replaced; other text unchanged."""
    if "://" not in text or ("@" not in text and "=" not in text):
        return text
    return scrub_text(text)


def scrub_text(text: str) -> str:
    """Text with credentials recognisable by their shape replaced (URL user-info, ``?api_key=``, bearer tokens)."""
    if not text:
        return text
    # Cheap tests first: most text (logs, bodies) has none of these shapes.
    if "@" in text and "://" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    if "=" in text:
        text = _QUERY_PARAM.sub(
            lambda m: f"{m['lead']}{REDACTED}" if _is_secret_param(m["name"]) else m.group(0),
            text,
        )
    if "earer" in text:
        text = _BEARER.sub(lambda m: f"{m['lead']}{REDACTED}", text)
    return text


def _is_secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_PARAMS or is_secret_name(lowered)


# --- references -------------------------------------------------------------------------------


def for_validation(metadata: Mapping[str, JSON]) -> dict[str, JSON]:
    """The metadata with each reference replaced by a stand-in string, for a handler's ``validate``.

    Raises InvalidArgument naming a malformed reference.
    """
    return {key: _stand_in(value, f"metadata.{key}") for key, value in metadata.items()}


def _stand_in(value: JSON, path: str) -> JSON:
    if isinstance(value, dict) and REF_KEY in value:
        if not is_reference(value) or not _REF_NAME.fullmatch(str(value[REF_KEY])) or ".." in str(value[REF_KEY]):
            raise InvalidArgument(
                path, 'a secret reference is {"secretRef": "<file name>", "prefix": "<optional text>"}'
            )
        return f"{value.get(PREFIX_KEY, '')}secret-{value[REF_KEY]}"
    if isinstance(value, dict):
        return {k: _stand_in(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_stand_in(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def resolve(metadata: Mapping[str, JSON], directory: str) -> dict[str, JSON]:
    """The metadata with each reference replaced by ``prefix`` + the content of its file in ``directory``.

    Called where the executor builds a handler's context. Raises SecretUnavailable (a failed attempt,
    category POLICY) when a referenced file cannot be read.
    """
    return {key: _resolve(value, directory) for key, value in metadata.items()}


def _resolve(value: JSON, directory: str) -> JSON:
    if is_reference(value):
        assert isinstance(value, dict)
        return str(value.get(PREFIX_KEY, "")) + read_secret(str(value[REF_KEY]), directory)
    if isinstance(value, dict):
        return {k: _resolve(v, directory) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, directory) for v in value]
    return value


def read_secret(name: str, directory: str) -> str:
    """The content of secret ``name`` (one trailing newline dropped); SecretUnavailable when it cannot be read."""
    if not directory:
        raise SecretUnavailable(f"secret {name!r} is referenced but SCHEDULE_SECRETS_DIR is not set")
    if not _REF_NAME.fullmatch(name) or ".." in name:
        raise SecretUnavailable(f"secret reference {name[:64]!r} is not a file name")
    root = Path(directory).resolve()
    try:
        # Kubernetes mounts each key as a symlink into ..data/; the target must stay inside the directory.
        path = (root / name).resolve(strict=True)
        if not path.is_relative_to(root):
            raise SecretUnavailable(f"secret {name!r} points outside SCHEDULE_SECRETS_DIR")
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        missing = isinstance(error, FileNotFoundError)
        reason = "does not exist" if missing else f"cannot be read ({type(error).__name__})"
        raise SecretUnavailable(f"secret {name!r} {reason} in SCHEDULE_SECRETS_DIR") from None
    return content.removesuffix("\n")


# --- scrubbing what an execution produced -------------------------------------------------------


def secret_values(metadata: Mapping[str, JSON], directory: str = "") -> set[str]:
    """Every credential value ``metadata`` holds or references (references that cannot be read are skipped)."""
    found: set[str] = set()
    _collect(metadata, secret=False, directory=directory, found=found)
    return {v for v in found if len(v) >= _MIN_SCRUB_LENGTH}


def _collect(value: JSON, *, secret: bool, directory: str, found: set[str]) -> None:
    if is_reference(value):
        assert isinstance(value, dict)
        with contextlib.suppress(SecretUnavailable):
            found.add(read_secret(str(value[REF_KEY]), directory))
    elif isinstance(value, dict):
        for k, v in value.items():
            _collect(v, secret=secret or is_secret_name(k), directory=directory, found=found)
    elif isinstance(value, list):
        for v in value:
            _collect(v, secret=secret, directory=directory, found=found)
    elif isinstance(value, str):
        if secret:
            found.add(value)
            scheme, _, token = value.partition(" ")  # "Bearer abc": the token alone shows up in text too
            if token and scheme.lower() in ("bearer", "basic", "token"):
                found.add(token.strip())
        found.update(_url_secrets(value))


def _url_secrets(text: str) -> Iterable[str]:
    if "://" not in text:
        return ()
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return ()
    values = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        values += [userinfo, unquote(userinfo), *userinfo.split(":", 1)[1:]]
        if parts.password:
            values.append(unquote(parts.password))
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if _is_secret_param(name):
            values += [value, quote(value, safe="")]
    return values


def scrub(text: str, values: Iterable[str]) -> str:
    """``text`` with each of ``values`` and every credential recognisable by its shape replaced."""
    for value in sorted(values, key=len, reverse=True):  # longest first: a value may contain another
        if value and value in text:
            text = text.replace(value, REDACTED)
    return scrub_text(text)


def scrub_json(value: JSON, values: Iterable[str]) -> JSON:
    """A JSON value with every string scrubbed (keys too)."""
    values = list(values)
    if isinstance(value, str):
        return scrub(value, values)
    if isinstance(value, dict):
        return {scrub(k, values): scrub_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_json(v, values) for v in value]
    return value


def scrub_outcome(outcome: Outcome, metadata: Mapping[str, JSON], directory: str = "") -> Outcome:
    """The outcome with the task's secret values removed from its error, result and traceback.

    Called once, where the executor records an outcome, so no stored execution holds a secret.
    """
    values = secret_values(metadata, directory)
    return dataclasses.replace(
        outcome,
        error=None if outcome.error is None else scrub(outcome.error, values),
        result=scrub_json(outcome.result, values),
        traceback=None if outcome.traceback is None else scrub(outcome.traceback, values),
    )
