"""The two web faces served by the API itself: ``/ops`` (analytics dashboard) and ``/pos``
(phone-sized point of sale), plus their static files.

Everything a page loads comes from this app (a store network may have no internet): our
JS/CSS under ``/static/``, plotly.js straight from the installed ``plotly`` Python package
(``/static/vendor/plotly.min.js``), and product pictures as generated SVG placeholders when the
catalog's image URL points outside the app.
"""

from __future__ import annotations

import gzip
import hashlib
from functools import cache
from html import escape
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from storelens import __version__

WEB = Path(__file__).resolve().parent.parent / "web"
STATIC = WEB / "static"
templates = Jinja2Templates(directory=str(WEB / "templates"))
router = APIRouter(include_in_schema=False)

_CACHE_STATIC = "public, max-age=300"
_CACHE_VENDOR = "public, max-age=86400"
_PALETTE = ("#2f6f8f", "#8f4f2f", "#4f8f3f", "#7f3f8f", "#8f7f2f", "#2f8f7f", "#8f2f4f")


# Scripts only from this app (no inline script runs, so an injected one cannot either); styles
# also inline, which plotly needs for its charts; data:/blob: images for plotly and the PNG
# export; fetch and the SSE stream to this app only; never framed (clickjacking a till).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the POS link carries its token in the fragment
}


def _render(request: Request, name: str, title: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        name,
        {"title": title, "version": __version__, "asset_tag": _asset_tag()},
        headers=PAGE_HEADERS,
    )


@cache
def _asset_tag() -> str:
    # Changes whenever our JS/CSS change, so browsers never run a stale page script.
    h = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:10]


@router.get("/", response_class=RedirectResponse)
def root() -> RedirectResponse:
    return RedirectResponse("/ops")


@router.get("/ops", response_class=HTMLResponse)
def ops_page(request: Request) -> HTMLResponse:
    return _render(request, "ops.html", "storelens ops")


@router.get("/pos", response_class=HTMLResponse)
def pos_page(request: Request) -> HTMLResponse:
    return _render(request, "pos.html", "storelens POS")


@cache
def _plotly() -> tuple[bytes, bytes]:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    raw = path.read_bytes()
    # 4.8 MB raw, ~1.4 MB gzipped: compressed once, served many times over store Wi-Fi.
    return raw, gzip.compress(raw, compresslevel=6)


@router.get("/static/vendor/plotly.min.js")
def plotly_js(request: Request) -> Response:
    raw, packed = _plotly()
    headers = {"Cache-Control": _CACHE_VENDOR, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type="text/javascript", headers=headers)
    return Response(raw, media_type="text/javascript", headers=headers)


@router.get("/static/products/{sku}.svg")
def product_placeholder(sku: str, name: str = "", category: str = "") -> Response:
    """A neutral product picture: category colour and the product's initials."""
    label = (name or sku).strip()
    initials = "".join(w[0] for w in label.split()[:2]).upper() or "?"
    colour = _PALETTE[int(hashlib.sha256(category.encode()).hexdigest(), 16) % len(_PALETTE)]
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="160" viewBox="0 0 160 160">'
        f'<rect width="160" height="160" rx="12" fill="{colour}"/>'
        '<text x="80" y="92" font-family="sans-serif" font-size="48" fill="#fff"'
        f' text-anchor="middle">{escape(initials[:2])}</text>'
        '<text x="80" y="140" font-family="sans-serif" font-size="13" fill="#fff"'
        f' text-anchor="middle" opacity="0.85">{escape(category[:22])}</text></svg>'
    )
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": _CACHE_VENDOR})


@router.get("/static/{path:path}")
def static_file(path: str) -> FileResponse:
    try:
        target = (STATIC / path).resolve()
        found = target.is_relative_to(STATIC) and target.is_file()
    except (ValueError, OSError):  # a NUL byte or a name the file system refuses
        found = False
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return FileResponse(target, headers={"Cache-Control": _CACHE_STATIC})
