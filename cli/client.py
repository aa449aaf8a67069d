"""``bilevel submit | status | watch | trace | cancel | result | hparams``: one job at a time.

A thin layer over the Python client (:class:`client.Client`): each command parses its
arguments, makes one or two calls and prints the answer. The client talks to ``--url``
(``BILEVEL_URL``) with ``--key`` (``BILEVEL_API_KEY``, else the key ``serve`` wrote under the
state directory); the server is the judge of a spec, its compute budget included. Nothing
here imports the server, SQLAlchemy or torch (a test checks ``sys.modules``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UsageError
from cli.hints import describe_invalid
from cli.settings import DEFAULT_URL, KEY_FILE, ClientSettings
from client import ApiError, Client
from client._inputs import wait_text
from client.progress import Bar
from jobs.status import JobStatus

if TYPE_CHECKING:
    import httpx

__all__ = [
    "add_commands",
    "client_options",
    "client_settings",
    "connect",
    "invalid",
    "read_spec",
]

# a CLI call is resent twice on a connection error (0.5 s, then 1 s later)
RETRIES = 2


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


def connect(args: argparse.Namespace) -> Client:
    """The Python client for the server and key the options and environment name."""
    settings = client_settings(args)
    key = settings.resolved_key()
    if not key:
        raise UsageError(
            f"no API key: pass --key, set BILEVEL_API_KEY, or pass --state-dir with the state "
            f"directory of `bilevel serve` (the key file {settings.key_file} does not exist)"
        )
    return Client(settings.url, key, retries=RETRIES, http=_connect(settings.url, {}))


def read_spec(path: str) -> Any:
    """The spec file's JSON value (the server checks the rest)."""
    from pydantic_core import from_json

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return from_json(text)
    except ValueError as exc:  # pydantic's own wording, as the server would say it
        raise UsageError(f"{path}: (body): Invalid JSON: {exc}") from None


def invalid(c: Client, exc: ApiError, path: str, sent: Any, route: str) -> UsageError:
    """A refused create as a usage error: a 422's fields (with "did you mean") as a file
    error, else the status and the problem's detail."""
    if exc.status == 422:
        return UsageError(f"{path}: {describe_invalid(c, exc, sent, route)}")
    return UsageError(str(exc))


def add_idempotency_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--idempotency-key``: a create retried with it returns the first ``what``."""
    p.add_argument("--idempotency-key", help=f"rerun with the same key, the server returns "
                   f"the first {what} instead of creating another")  # fmt: skip


def is_study(value: Any) -> bool:
    """Whether a parsed file is a study (``base`` and ``grid``) rather than a job spec."""
    return isinstance(value, dict) and "base" in value and "grid" in value


def cmd_submit(args: argparse.Namespace) -> int:
    value = read_spec(args.file)
    if is_study(value):
        raise UsageError(
            f"{args.file} is a study (it has base and grid): submit it with "
            f"`bilevel study submit {args.file}`"
        )
    c = connect(args)
    try:
        job = c.jobs.submit(value, idempotency_key=args.idempotency_key)
    except ApiError as exc:
        raise invalid(c, exc, args.file, value, "/v1/jobs") from None
    print(job.id)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    job = connect(args).jobs.get(args.id)
    print(job.model_dump_json(indent=2))
    _warn_divergence(job.summary)
    return 0


def _warn_divergence(summary: dict[str, Any] | None) -> None:
    """One line on stderr per divergence warning of a job's summary (worker.divergence)."""
    for w in (summary or {}).get("warnings") or []:
        more = f" ({w['count']} iterations flagged)" if w.get("count", 1) > 1 else ""
        print(f"warning: {w['message']}{more}", file=sys.stderr)


def cmd_watch(args: argparse.Namespace) -> int:
    c = connect(args)
    bar = Bar(c.jobs.get(args.id).progress.iterations)
    job = c.jobs.wait(args.id, interval=args.interval, progress=False,
                      on_poll=lambda j: bar.show(j.progress.iteration, wait_text(j)))  # fmt: skip
    bar.close()
    _warn_divergence(job.summary)
    if job.status == JobStatus.FAILED and job.error:
        print(f"{job.error.type}: {job.error.detail}", file=sys.stderr)
    if job.status == JobStatus.PRUNED:  # a search member its study stopped
        at = (job.summary or {}).get("pruned_at")
        print(f"pruned by its study at iteration {at}; its trace is kept", file=sys.stderr)
    print(job.status)
    return 0 if job.status == JobStatus.SUCCEEDED else 1


def cmd_trace(args: argparse.Namespace) -> int:
    fields = args.fields.split(",") if args.fields else None
    cols = connect(args).jobs.trace(args.id, fields, max_points=args.max_points, after=args.after)
    print_columns(cols, args.format)
    return 0


def print_columns(cols: Mapping[str, Sequence[Any]], fmt: str) -> None:
    """Columns as a table with a header line, or as CSV."""
    names = list(cols)
    rows = list(zip(*(cols[n] for n in names)))
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(names)
        w.writerows(rows)
        return
    print("  ".join(f"{n:>13}" for n in names))
    for row in rows:
        print("  ".join(f"{fmt_value(v):>13}" for v in row))


def fmt_value(v: Any) -> str:
    """A table cell: ``-`` for nothing, six significant digits for a float."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def cmd_cancel(args: argparse.Namespace) -> int:
    job = connect(args).jobs.cancel(args.id)
    print(job.status + (" (stop requested)" if job.cancel_requested else ""))
    return 0


def cmd_result(args: argparse.Namespace) -> int:
    res = connect(args).jobs.result(args.id)
    if args.json:
        print(res.model_dump_json(indent=2))
        return 0
    print(f"{'field':<20}  value")
    rows = [("status", res.status), ("iterations", res.iterations),
            ("final_outer_loss", res.final_outer_loss), ("best_outer_loss", res.best_outer_loss),
            ("best_iteration", res.best_iteration),
            *sorted(res.metrics.items())]  # fmt: skip
    for name, value in rows:
        print(f"{name:<20}  {fmt_value(value)}")
    if res.hparams is not None:
        print(f"{'hparams':<20}  {json.dumps(res.hparams)}")
    return 0


def cmd_hparams(args: argparse.Namespace) -> int:
    data = connect(args).jobs.hparams_bytes(args.id)
    out = Path(args.output or f"{args.id}-hparams.npz")
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    with zipfile.ZipFile(out) as z:  # an .npz is a zip of NAME.npy members
        names = [n.removesuffix(".npy") for n in z.namelist()]
    print(f"wrote {out}: {len(data)} bytes, arrays {', '.join(names)} (numpy.load reads it)",
          file=sys.stderr)  # fmt: skip
    print(out)
    return 0


def client_options() -> argparse.ArgumentParser:
    """The options every client command takes: ``--url``, ``--key``, ``--state-dir``."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--url", help=f"service URL (BILEVEL_URL, default {DEFAULT_URL})")
    p.add_argument("--key", help="API key (BILEVEL_API_KEY, else the embedded key file)")
    p.add_argument("--state-dir", help=f"an embedded server's state directory: its key file "
                   f"DIR/{KEY_FILE} is the key when none is given (BILEVEL_STATE_DIR)")  # fmt: skip
    return p


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``submit``, ``status``, ``cancel``, ``watch``, ``trace``, ``result``, ``hparams``."""
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

    p = commands.add_parser(
        "result", help="a succeeded job's final losses, metrics and small hparams", parents=client
    )
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    p.set_defaults(func=cmd_result)

    p = commands.add_parser(
        "hparams", help="download a succeeded job's learned hparams (.npz)", parents=client
    )
    p.add_argument("id")
    p.add_argument("-o", "--output", help="the file to write (default ID-hparams.npz)")
    p.set_defaults(func=cmd_hparams)
