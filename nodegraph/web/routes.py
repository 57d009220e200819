"""Serves the page: `/` is static/index.html, `/static/...` its modules and styles.

The page's files hold no data, so they are the only paths a token does not guard: the page asks for the
token and sends it with every API call it makes (see static/js/api.js).
"""

from __future__ import annotations

import pathlib

STATIC = pathlib.Path(__file__).parent / "static"
# The page may talk to its own server only: no fonts, scripts or images from anywhere else.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                           "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                           "frame-ancestors 'none'")


def is_public(path: str) -> bool:
    """Paths served without the token: the page itself, never the API."""
    return path == "/" or (path.startswith("/static/") and ".." not in path)


def add_page(app) -> None:
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"})
