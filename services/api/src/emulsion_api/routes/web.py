"""The browser uploader (clients/web): its page at `/upload`, its bundle under `/upload/assets/`.

The bundle is built by `make web` into `clients/web/dist` (or the directory named by
`EMULSION_WEB_DIR`, where an image copies it). When it is missing the page answers 503
saying so, instead of a bare 404: the API works without it, the page cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from emulsion_api.deps import ServicesDep
from emulsion_api.errors import ApiError

router = APIRouter(tags=["web"], include_in_schema=False)

PAGE: Final = "index.html"
# Only what the build writes; a request for anything else is a 404, never a file read.
ASSET_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    # The bundled packages' licence notices (esbuild's legalComments).
    ".txt": "text/plain; charset=utf-8",
}
NOT_BUILT: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Emulsion uploader: not built</title></head>
<body><main><h1>The web uploader is not built</h1>
<p>This API serves the uploader from <code>{directory}</code>, which has no
<code>index.html</code>. Build it with <code>make web</code> (or set
<code>EMULSION_WEB_DIR</code> to a built bundle) and reload this page.</p></main></body></html>
"""


def _page_or_503(directory: Path) -> Response:
    page = directory / PAGE
    if not page.is_file():
        return HTMLResponse(NOT_BUILT.format(directory=directory), status_code=503)
    # The page names its bundle by content hash, so only the page itself must be revalidated.
    return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/upload")
async def upload_page(services: ServicesDep) -> Response:
    return _page_or_503(services.settings.web_directory())


@router.get("/")
async def root() -> Response:
    return RedirectResponse("/upload")


@router.get("/upload/assets/{name}")
async def upload_asset(name: str, services: ServicesDep) -> Response:
    directory = services.settings.web_directory() / "assets"
    suffix = Path(name).suffix
    if "/" in name or name.startswith(".") or suffix not in ASSET_TYPES:
        raise ApiError(404, "not_found", f"no asset {name!r}")
    path = directory / name
    if not path.is_file():
        raise ApiError(404, "not_found", f"no asset {name!r}; is the uploader built (make web)?")
    return FileResponse(
        path,
        media_type=ASSET_TYPES[suffix],
        # Names carry a content hash: a new build is a new name.
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
