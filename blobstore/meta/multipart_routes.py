"""Read routes of multipart uploads (commands go through ``POST /v1/command``).

    GET /v1/uploads/one?upload_id=      -> {"upload", "parts"}   (404 NoSuchUpload)
    GET /v1/uploads?bucket=&prefix=&key_marker=&upload_id_marker=&max_uploads=
                                        -> {"uploads", "is_truncated"}
"""

from __future__ import annotations

from aiohttp import web

from blobstore.core.errors import Invalid
from blobstore.meta import multipart

MAX_UPLOADS = 1000


def add_multipart_routes(app: web.Application) -> None:
    app.router.add_get("/v1/uploads/one", handle_get_upload)
    app.router.add_get("/v1/uploads", handle_list_uploads)


async def handle_get_upload(request: web.Request) -> web.Response:
    from blobstore.meta.app import _answer, _query, _service

    service = _service(request)
    view, stale = await service.read(multipart.read_upload, _query(request, "upload_id"))
    return _answer(view, stale)


async def handle_list_uploads(request: web.Request) -> web.Response:
    from blobstore.meta.app import _answer, _query, _service

    service = _service(request)
    text = _query(request, "max_uploads", str(MAX_UPLOADS))
    if not (text.isascii() and text.isdigit()):
        raise Invalid("max_uploads must be a non-negative integer")
    listing, stale = await service.read(
        multipart.read_uploads, _query(request, "bucket"), _query(request, "prefix"),
        _query(request, "key_marker"), _query(request, "upload_id_marker"),
        min(int(text), MAX_UPLOADS))
    return _answer(listing, stale)
