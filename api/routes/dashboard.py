"""The dashboard: static HTML, CSS and JavaScript served at ``/`` and ``/static/...``.

Nothing is built at run time and nothing comes from another origin: the files live in
``api/static`` (uPlot is vendored under ``vendor/uplot`` with its licence). Every response of
this router carries a strict Content-Security-Policy: scripts, styles, images and fetches
from this origin only, no inline script or style, no framing. The page signs in with an API
key kept in the browser's localStorage; a ``#key=...`` fragment (never sent to the server)
signs it in from the URL ``bilevel serve`` prints.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from api.errors import ProblemError

__all__ = ["CSP", "STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}

router = APIRouter(include_in_schema=False)


def _file(path: Path, request: Request, *, cache: str) -> Response:
    media = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "text/plain"
    st = path.stat()
    etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": etag}
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type=media, headers=headers)


@router.get("/")
def index(request: Request) -> Response:
    """The dashboard's single page."""
    return _file(STATIC_DIR / "index.html", request, cache="no-cache")


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    """The dashboard's icon."""
    return _file(STATIC_DIR / "favicon.svg", request, cache="public, max-age=86400")


@router.get("/static/{path:path}")
def static(path: str, request: Request) -> Response:
    """A file under ``api/static``; nothing outside it (no ``..``, no hidden files)."""
    target = (STATIC_DIR / path).resolve()
    if (
        not target.is_relative_to(STATIC_DIR)
        or any(part.startswith(".") for part in Path(path).parts)
        or not target.is_file()
    ):
        raise ProblemError(404, f"no static file {path}", slug="not-found")
    # revalidated on each load so a deploy is picked up at once; unchanged files get 304
    return _file(target, request, cache="no-cache")
