""" "Did you mean": a 422's unknown field or problem kind next to the nearest known name.

The server names the bad field (``outer.iteratons: Extra inputs are not permitted``); the
known names come from the server too, so they are those of its version and its plugins: a
field's siblings from the request body's schema in ``/openapi.json`` (a union followed by its
discriminator, ``problem.kind`` choosing the problem's options), a kind from
``/v1/problems``. :mod:`difflib` picks the nearest.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from client import Client
from client.errors import ApiError, ClientError, FieldError

__all__ = ["describe_invalid", "known_fields", "nearest"]


def nearest(word: str, names: Sequence[str]) -> str | None:
    """The known name closest to ``word``, if one is close enough.

    The cutoff is a difflib ratio of 0.5, not its default 0.6: short names differ by a
    larger fraction (``wo`` for ``w0`` is 0.5).
    """
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.5)
    return close[0] if close else None


def _resolve(doc: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _branch(doc: Mapping[str, Any], schema: Mapping[str, Any], sent: Any) -> Mapping[str, Any]:
    """A union's member that ``sent`` is (by the discriminator), else the first with
    properties."""
    schema = _resolve(doc, schema)
    union = schema.get("oneOf") or schema.get("anyOf")
    if not union:
        return schema
    disc = schema.get("discriminator") or {}
    tag = sent.get(disc.get("propertyName")) if isinstance(sent, Mapping) else None
    if tag is not None and tag in disc.get("mapping", {}):
        return _resolve(doc, {"$ref": disc["mapping"][tag]})
    members = [_branch(doc, m, sent) for m in union]
    return next((m for m in members if "properties" in m), schema)


def known_fields(doc: Mapping[str, Any], body: Mapping[str, Any], parent: Sequence[str],
                 sent: Any) -> list[str]:  # fmt: skip
    """The field names the schema ``body`` allows at the dotted path ``parent`` of ``sent``."""
    schema, node = _branch(doc, body, sent), sent
    for part in parent:
        props = schema.get("properties", {})
        if part not in props:
            return []
        node = node.get(part) if isinstance(node, Mapping) else None
        schema = _branch(doc, props[part], node)
    return list(schema.get("properties", {}))


def _value(sent: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(sent, Mapping):
            return None
        sent = sent.get(part)
    return sent


def _hint(c: Client, e: FieldError, sent: Any, body_path: str) -> str:
    path = e.field.split(".")
    if e.get("type") == "union_tag_not_found":
        # "Unable to extract tag using discriminator 'method'": the file spelled the tag's key
        tag = re.search(r"discriminator '(\w+)'", e.message)
        given = _value(sent, path[:-1] if tag and path[-1] == tag.group(1) else path)
        if tag and isinstance(given, Mapping):
            match = nearest(tag.group(1), [str(k) for k in given])
            return f" (the file has {match!r}: did you mean {tag.group(1)!r}?)" if match else ""
    if path[-1] == "kind" and e.get("type") != "missing":
        kind = _value(sent, path)
        kinds = [p["kind"] for p in c.get("/v1/problems")["data"]]
        match = nearest(str(kind), kinds) if isinstance(kind, str) else None
        return f" (did you mean {match!r}?)" if match else f" (known kinds: {', '.join(kinds)})"
    if e.get("type") == "extra_forbidden":
        doc = c.get("/openapi.json")
        body = doc["paths"][body_path]["post"]["requestBody"]["content"]["application/json"]
        if path[0] == "base" and body_path == "/v1/studies":  # a study's base is a job spec
            body = doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
            path, sent = path[1:], _value(sent, ["base"])
        match = nearest(path[-1], known_fields(doc, body["schema"], path[:-1], sent))
        return f" (did you mean {match!r}?)" if match else ""
    return ""


def describe_invalid(c: Client, exc: ApiError, sent: Any, body_path: str) -> str:
    """A 422's fields as one line, each unknown name followed by the nearest known one.

    Args:
        c: the client, to ask the server for its schema and kinds.
        exc: the server's 422.
        sent: the body that was sent, parsed.
        body_path: the route it was sent to (``/v1/jobs`` or ``/v1/studies``).
    """
    if not exc.errors:
        return exc.describe()
    parts = []
    for e in exc.errors:
        try:
            hint = _hint(c, e, sent, body_path)
        except (ClientError, KeyError, TypeError):  # a hint is a courtesy: never the error
            hint = ""
        parts.append(f"{e.field}: {e.message}{hint}")
    return "; ".join(parts)
