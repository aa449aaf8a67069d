"""MkDocs hook: the REST and CLI reference pages, generated at build time from the code.

``reference/rest.md`` renders the app's OpenAPI document (``create_app().openapi()``, built
in this process: no server, no network); ``reference/cli.md`` renders ``bilevel``'s argparse
parser, every command's ``--help``. Neither file is in the repository, so neither can go
stale: a route or an option that changes changes the page at the next build.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

from mkdocs.structure.files import File, Files

__all__ = ["cli_markdown", "on_files", "rest_markdown"]

_METHODS = ("get", "post", "put", "patch", "delete")


class _NoDispatch:
    """The app needs a dispatcher to be built; the document needs none to be written."""

    def send(self, job_id: Any, queue: Any) -> None:
        pass

    def ping(self) -> bool:
        return True


def openapi() -> dict[str, Any]:
    """The API's OpenAPI document, from an app built in this process on a throwaway store."""
    from api.main import create_app
    from api.settings import ApiSettings

    with tempfile.TemporaryDirectory() as state:
        settings = ApiSettings(database_url=None, broker_url=None, state_dir=state)
        return create_app(settings, dispatcher=_NoDispatch()).openapi()


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#schema-{name.lower()})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(_type(s) for s in schema[key])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    return str(schema.get("type", "any")) + (f" ({schema['format']})" if "format" in schema else "")


def _cell(text: Any) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    # FastAPI's summary is the function's name; the docstring is the description
    text = (op.get("description") or op.get("summary") or "").strip()
    out = [f"### {method.upper()} `{path}`", "", text, ""]
    params = op.get("parameters", [])
    if params:
        out += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in params:
            required = "yes" if p.get("required") else "no"
            out.append(f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}))} | "
                       f"{required} | {_cell(p.get('description'))} |")  # fmt: skip
        out.append("")
    body = op.get("requestBody")
    if body:
        kinds = ", ".join(f"`{t}` {_type(c.get('schema', {}))}" for t, c in body["content"].items())
        out += [f"Request body: {kinds}", ""]
    out += ["| status | description | body |", "|---|---|---|"]
    for code, resp in op.get("responses", {}).items():
        content = resp.get("content", {})
        bodies = ", ".join(f"`{t}` {_type(c.get('schema', {}))}" if c.get("schema") else f"`{t}`"
                           for t, c in content.items())  # fmt: skip
        out.append(f"| {code} | {_cell(resp.get('description'))} | {bodies} |")
    return [*out, ""]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"### {name} {{#schema-{name.lower()}}}", "", _cell(schema.get("description")), ""]
    props = schema.get("properties")
    if props:
        required = set(schema.get("required", []))
        out += ["| field | type | required | description |", "|---|---|---|---|"]
        for field, s in props.items():
            out.append(f"| `{field}` | {_type(s)} | {'yes' if field in required else 'no'} | "
                       f"{_cell(s.get('description'))} |")  # fmt: skip
    elif "enum" in schema:
        out.append("One of " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".")
    elif "oneOf" in schema or "anyOf" in schema:
        out.append("One of " + _type(schema) + ".")
    return [*out, ""]


def rest_markdown(doc: dict[str, Any]) -> str:
    """The REST reference page: every operation by tag, then every schema."""
    info = doc["info"]
    out = [
        "# REST API",
        "",
        f"{info['title']} API, version {info['version']}: generated from the OpenAPI document "
        "the server serves at `/openapi.json` (and as pages at `/docs`). Every route but the "
        "health checks and `/metrics` takes `Authorization: Bearer <key>`; errors are "
        "`application/problem+json` ([Problem](#schema-problem)).",
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in doc["paths"].items():
        for method in _METHODS:
            if method in item:
                op = item[method]
                by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((path, method, op))
    for tag, ops in by_tag.items():
        out += [f"## {tag}", ""]
        for path, method, op in ops:
            out += _operation(path, method, op)
    out += ["## Schemas", ""]
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        out += _schema(name, schema)
    return "\n".join(out) + "\n"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_markdown(parser: argparse.ArgumentParser) -> str:
    """The CLI reference page: ``bilevel --help``, then every command's and action's."""
    os.environ["COLUMNS"] = "100"  # argparse wraps help at the terminal's width
    out = ["# Command line", "", "Generated from `bilevel`'s parser: each command's `--help`.",
           "", "```text", parser.format_help().rstrip(), "```", ""]  # fmt: skip

    def walk(p: argparse.ArgumentParser, name: str, level: int) -> None:
        for sub, child in _subparsers(p).items():
            full = f"{name} {sub}"
            out.extend([f"{'#' * level} `{full}`", "", "```text",
                        child.format_help().rstrip(), "```", ""])  # fmt: skip
            walk(child, full, min(level + 1, 4))

    walk(parser, "bilevel", 2)
    return "\n".join(out) + "\n"


def on_files(files: Files, config: Any) -> Files:
    """Add the generated reference pages to the site."""
    from cli.main import build_parser

    pages = {
        "reference/rest.md": rest_markdown(openapi()),
        "reference/cli.md": cli_markdown(build_parser(with_experiments=False)),
    }
    for uri, text in pages.items():
        files.append(File.generated(config, uri, content=text))
    return files
