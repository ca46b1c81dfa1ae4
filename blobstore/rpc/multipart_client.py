"""Multipart-upload calls to meta, over a MetaClient (leader discovery, retries, apply-once)."""

from __future__ import annotations

from typing import Any

import msgspec
import yarl

from blobstore.core.records import Part, Segment, Upload
from blobstore.rpc.meta_client import MetaClient


class _UploadView(msgspec.Struct, frozen=True):
    upload: Upload
    parts: list[Part]


class _UploadList(msgspec.Struct, frozen=True):
    uploads: list[Upload]
    is_truncated: bool


def _b(value: object) -> Any:
    return msgspec.to_builtins(value)


async def create_upload(meta: MetaClient, upload: Upload) -> None:
    await meta.command({"type": "create_upload", "upload": _b(upload)})


async def put_part(meta: MetaClient, upload_id: str, part: Part,
                   new_segments: list[Segment]) -> None:
    await meta.command({"type": "put_part", "upload_id": upload_id, "part": _b(part),
                        "new_segments": _b(new_segments)})


async def complete_upload(meta: MetaClient, upload_id: str, parts: list[tuple[int, str]],
                          version_id: str, created_ns: int) -> dict[str, Any]:
    return await meta.command({"type": "complete_upload", "upload_id": upload_id,
                               "parts": [list(p) for p in parts], "version_id": version_id,
                               "created_ns": created_ns})


async def abort_upload(meta: MetaClient, upload_id: str) -> None:
    await meta.command({"type": "abort_upload", "upload_id": upload_id})


async def get_upload(meta: MetaClient, upload_id: str) -> tuple[Upload, list[Part]]:
    path = str(yarl.URL.build(path="/v1/uploads/one", query={"upload_id": upload_id}))
    view = msgspec.json.decode(await meta._request("GET", path), type=_UploadView)
    return view.upload, view.parts


async def list_uploads(meta: MetaClient, bucket: str, prefix: str, key_marker: str,
                       upload_id_marker: str, max_uploads: int) -> tuple[list[Upload], bool]:
    path = str(yarl.URL.build(path="/v1/uploads", query={
        "bucket": bucket, "prefix": prefix, "key_marker": key_marker,
        "upload_id_marker": upload_id_marker, "max_uploads": str(max_uploads)}))
    listing = msgspec.json.decode(await meta._request("GET", path), type=_UploadList)
    return listing.uploads, listing.is_truncated
