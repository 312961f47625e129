"""Routes built from the ``google.api.http`` annotations of a service's methods, not written per endpoint.

A new annotated unary RPC gets its route by being in the descriptor. Streaming RPCs are left off the
shim: HTTP/JSON clients of the seed have no use for them, and they stay reachable over gRPC.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?:=([^}]*))?\}")


class NoRoute(LookupError):
    """No route has this path."""


class WrongVerb(LookupError):
    """A route has this path, but not for this verb; ``allowed`` lists the verbs that have it."""

    def __init__(self, allowed: Sequence[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = list(allowed)


@dataclass(frozen=True)
class Route:
    """One HTTP binding of a method: ``verb template`` with its path variables and body mapping."""

    verb: str
    template: str
    method: MethodDescriptor
    pattern: re.Pattern[str]
    variables: tuple[str, ...]
    body: str  # "" no body, "*" the whole request, or the name of one request field

    @property
    def full_method(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    def path_values(self, raw_path: str) -> dict[str, str] | None:
        match = self.pattern.fullmatch(raw_path)
        if match is None:
            return None
        return {name: urllib.parse.unquote(value) for name, value in zip(self.variables, match.groups(), strict=True)}


def _segment_pattern(pattern: str) -> str:
    parts = []
    for segment in pattern.split("/"):
        if segment == "**":
            parts.append(".+")
        elif segment == "*":
            parts.append("[^/]+")
        else:
            parts.append(re.escape(segment))
    return "/".join(parts)


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """``/api/tasks/{name}/history`` -> a regex over the raw (still percent-encoded) path, and the variables."""
    regex, variables, position = [], [], 0
    for match in _VARIABLE.finditer(template):
        regex.append(re.escape(template[position : match.start()]))
        variables.append(match.group(1))
        regex.append(f"({_segment_pattern(match.group(2) or '*')})")
        position = match.end()
    regex.append(re.escape(template[position:]))
    return re.compile("".join(regex)), tuple(variables)


def _bindings(rule: http_pb2.HttpRule) -> Iterator[http_pb2.HttpRule]:
    yield rule
    yield from rule.additional_bindings


def _verb_and_template(rule: http_pb2.HttpRule) -> tuple[str, str] | None:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        return None
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return kind.upper(), getattr(rule, kind)


def routes_for(service: ServiceDescriptor) -> list[Route]:
    """Every HTTP binding of the service's unary methods, literal-heavy templates first."""
    routes = []
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            continue
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        for rule in _bindings(options.Extensions[annotations_pb2.http]):
            verb_template = _verb_and_template(rule)
            if verb_template is None:
                continue
            verb, template = verb_template
            pattern, variables = compile_template(template)
            routes.append(Route(verb, template, method, pattern, variables, rule.body))
    # A literal such as ":preview" must win over a variable that could swallow it.
    routes.sort(key=lambda r: -len(_VARIABLE.sub("", r.template)))
    return routes


def match(routes: Sequence[Route], verb: str, raw_path: str) -> tuple[Route, dict[str, str]]:
    """The route for ``verb raw_path`` and its path values; NoRoute or WrongVerb otherwise."""
    allowed = []
    for route in routes:
        values = route.path_values(raw_path)
        if values is None:
            continue
        if route.verb == verb:
            return route, values
        allowed.append(route.verb)
    if allowed:
        raise WrongVerb(sorted(set(allowed)))
    raise NoRoute(raw_path)
