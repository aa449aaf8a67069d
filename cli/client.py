"""``bilevel submit | status | watch | trace | cancel``: the commands that talk to a server.

They talk to ``--url`` (``BILEVEL_URL``) with ``--key`` (``BILEVEL_API_KEY``, else the key
``serve`` wrote under the state directory); see :class:`cli.settings.ClientSettings`. The
server is the judge of a spec, its compute budget included: ``submit`` sends the file and
prints the server's answer. Nothing here imports the server, SQLAlchemy or torch (a test
checks ``sys.modules``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UsageError
from cli.progress import Bar
from cli.settings import DEFAULT_URL, ClientSettings
from jobs.status import TERMINAL, JobStatus

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Client",
    "add_commands",
    "client_options",
    "client_settings",
    "cmd_cancel",
    "cmd_status",
    "cmd_submit",
    "cmd_trace",
    "cmd_watch",
    "problem_text",
    "read_spec",
]


def client_settings(args: argparse.Namespace) -> ClientSettings:
    """The environment's :class:`ClientSettings`, with ``--url``, ``--key``, ``--state-dir``
    over them."""
    over: dict[str, Any] = {}
    if getattr(args, "url", None):
        over["url"] = args.url
    if getattr(args, "key", None):
        over["api_key"] = args.key
    if getattr(args, "state_dir", None):
        over["state_dir"] = Path(args.state_dir)
    return ClientSettings(**over)


def _connect(url: str, headers: Mapping[str, str]) -> httpx.Client:
    """The HTTP client every command uses (tests swap in one on an in-process app)."""
    import httpx

    return httpx.Client(base_url=url, headers=dict(headers), timeout=30)


def problem_text(r: httpx.Response) -> str:
    """A problem document (``application/problem+json``) as one line: its fields' errors
    (``field: message; ...``), else its ``detail``, else the body."""
    try:
        body = r.json()
    except ValueError:
        return r.text
    if not isinstance(body, dict):
        return r.text
    fields = [f"{e['field']}: {e['message']}" for e in body.get("errors", [])]
    return "; ".join(fields) if fields else str(body.get("detail", r.text))


class Client:
    """The REST API as the client commands call it: the key and URL from the settings."""

    def __init__(self, args: argparse.Namespace):
        settings = client_settings(args)
        key = settings.resolved_key()
        if not key:
            raise UsageError("no API key: pass --key or set BILEVEL_API_KEY")
        self.http = _connect(settings.url, {"Authorization": f"Bearer {key}"})

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """The server's response, whatever its status; a usage error if there is none."""
        import httpx

        try:
            return self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot reach {self.http.base_url}: {exc}") from None

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A successful response; an error status is a usage error naming it."""
        r = self.request(method, path, **kw)
        if r.status_code >= 400:
            raise UsageError(f"HTTP {r.status_code}: {problem_text(r)}")
        return r


def read_spec(path: str) -> str:
    """The spec file's text, once it is known to be JSON at all (the server checks the rest)."""
    from pydantic_core import from_json

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        from_json(text)
    except ValueError as exc:  # pydantic's own wording, as the server would say it
        raise UsageError(f"{path}: (body): Invalid JSON: {exc}") from None
    return text


def add_idempotency_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--idempotency-key``: a create retried with it returns the first ``what``."""
    p.add_argument("--idempotency-key", help=f"rerun with the same key, the server returns "
                   f"the first {what} instead of creating another")  # fmt: skip


def idempotency_headers(args: argparse.Namespace) -> dict[str, str]:
    """The ``Idempotency-Key`` header of a create, when ``--idempotency-key`` was given."""
    return {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}


def cmd_submit(args: argparse.Namespace) -> int:
    text = read_spec(args.file)
    headers = {"Content-Type": "application/json", **idempotency_headers(args)}
    r = Client(args).request("POST", "/v1/jobs", content=text.encode(), headers=headers)
    if r.status_code == 422:
        # an invalid spec or one over the server's compute budget: the fields, as a file error
        raise UsageError(f"{args.file}: {problem_text(r)}")
    if r.status_code >= 400:
        raise UsageError(f"HTTP {r.status_code}: {problem_text(r)}")
    print(r.json()["id"])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    job = Client(args).call("GET", f"/v1/jobs/{args.id}").json()
    print(json.dumps(job, indent=2))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    client = Client(args)
    job = client.call("GET", f"/v1/jobs/{args.id}").json()
    bar = Bar(job["progress"]["iterations"])
    while True:
        p = job["progress"]
        loss = (job.get("summary") or {}).get("last_outer_loss")
        eta = f" eta {p['eta_s']:.0f}s" if p.get("eta_s") else ""
        bar.show(p["iteration"], f"{job['status']}" + (f" loss {loss:.4g}" if loss else "") + eta)
        if job["status"] in TERMINAL:
            break
        time.sleep(args.interval)
        job = client.call("GET", f"/v1/jobs/{args.id}").json()
    bar.close()
    if job["status"] == JobStatus.FAILED and job.get("error"):
        print(f"{job['error']['type']}: {job['error']['detail']}", file=sys.stderr)
    if job["status"] == JobStatus.PRUNED:  # a search member its study stopped
        at = (job.get("summary") or {}).get("pruned_at")
        print(f"pruned by its study at iteration {at}; its trace is kept", file=sys.stderr)
    print(job["status"])
    return 0 if job["status"] == JobStatus.SUCCEEDED else 1


def cmd_trace(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"after": args.after}
    if args.max_points:
        params["max_points"] = args.max_points
    if args.fields:
        params["fields"] = args.fields
    cols = Client(args).call("GET", f"/v1/jobs/{args.id}/trace", params=params).json()
    _print_columns(cols, args.format)
    return 0


def _print_columns(cols: Mapping[str, Sequence[Any]], fmt: str) -> None:
    names = list(cols)
    rows = list(zip(*(cols[n] for n in names)))
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(names)
        w.writerows(rows)
        return
    print("  ".join(f"{n:>13}" for n in names))
    for row in rows:
        print("  ".join(f"{_fmt(v):>13}" for v in row))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def cmd_cancel(args: argparse.Namespace) -> int:
    job = Client(args).call("POST", f"/v1/jobs/{args.id}/cancel").json()
    print(job["status"] + (" (stop requested)" if job["cancel_requested"] else ""))
    return 0


def client_options() -> argparse.ArgumentParser:
    """The options every client command takes: ``--url``, ``--key``, ``--state-dir``."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--url", help=f"service URL (BILEVEL_URL, default {DEFAULT_URL})")
    p.add_argument("--key", help="API key (BILEVEL_API_KEY, else the embedded key file)")
    p.add_argument("--state-dir", help="embedded state directory, to find its key file")
    return p


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``submit``, ``status``, ``cancel``, ``watch`` and ``trace``."""
    client = [client_options()]
    p = commands.add_parser(
        "submit", help="submit a job spec (JSON file); prints the job id", parents=client
    )
    p.add_argument("file")
    add_idempotency_option(p, "job")
    p.set_defaults(func=cmd_submit)

    for name, func, text in (
        ("status", cmd_status, "show a job as JSON"),
        ("cancel", cmd_cancel, "cancel a job"),
    ):
        p = commands.add_parser(name, help=text, parents=client)
        p.add_argument("id")
        p.set_defaults(func=func)

    p = commands.add_parser("watch", help="progress bar until the job ends", parents=client)
    p.add_argument("id")
    p.add_argument("--interval", type=float, default=1.0)
    p.set_defaults(func=cmd_watch)

    p = commands.add_parser("trace", help="print a job's trace as a table or CSV", parents=client)
    p.add_argument("id")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.add_argument("--after", type=int, default=0)
    p.add_argument("--max-points", type=int)
    p.add_argument("--fields", help="comma-separated, e.g. outer_loss,grad_norm")
    p.set_defaults(func=cmd_trace)
