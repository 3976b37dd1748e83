"""What both telemetry middlewares need to know about a finished ASGI request."""

from __future__ import annotations

from starlette.types import Scope

# Every path no route matched shares this one label, so scanners cannot grow the label set.
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The matched route's template (`/events/{event_id}`), or `UNMATCHED`.

    Read after the app has handled the request: routing leaves its choice in the scope.
    FastAPI keeps included routers nested, so `scope["route"]` can lack the outer prefixes;
    the effective route context has the full template. Plain Starlette routes and mounts
    (the docs, static files) leave only their endpoint behind.
    """
    effective = scope.get("fastapi", {}).get("effective_route_context")
    for route in (effective, scope.get("route"), _plain_route(scope)):
        template = getattr(route, "path_format", None)
        if isinstance(template, str):
            return template
    return UNMATCHED


def _plain_route(scope: Scope) -> object | None:
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return None
    for route in getattr(scope.get("app"), "routes", ()):
        if endpoint is getattr(route, "endpoint", None) or endpoint is getattr(route, "app", None):
            return route
    return None


def method_label(scope: Scope) -> str:
    """The HTTP method, or "OTHER" for made-up ones (clients choose it freely)."""
    method = scope.get("method", "")
    return method if method in _METHODS else "OTHER"
