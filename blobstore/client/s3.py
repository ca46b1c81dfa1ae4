"""A small synchronous S3 client for the ``blobstore`` CLI (path-style, SigV4 in headers).

Why not boto3: the CLI must start fast, stream files of any size in bounded memory, and
depend on nothing but the project. ``http.client`` gives exact control of what is sent
(so what is signed is what goes on the wire) and of streaming both ways.

Rules:
- Every request is signed by ``core/s3/sigv4.sign_headers`` over ``host`` and the other
  headers we set; the path and query are encoded by the same module's ``uri_encode`` and
  ``canonical_query_string``, so what is sent is byte for byte what was signed.
- A file upload is read twice: a first pass computes SHA-256 (the signed payload hash) and
  MD5 (sent as Content-MD5, so the gateway refuses a body damaged on the way); the second
  pass streams it with a Content-Length. A stream of unknown length goes out with
  ``Transfer-Encoding: chunked`` and ``x-amz-content-sha256: UNSIGNED-PAYLOAD``.
- Downloads stream to a writable in ``CHUNK_BYTES`` pieces. The MD5 of the bytes received is
  checked against a single-part ETag; a mismatch or a short body raises, never passes.
- An S3 error document becomes ``S3ClientError`` (code, message, status); connection
  failures become ``Unavailable``. A request is retried once on a fresh connection when a
  kept-alive connection turns out closed and the body can be sent again.
- Memory is bounded by ``CHUNK_BYTES`` per transfer, whatever the object size.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from blobstore.client.s3_responses import (
    BucketEntry,
    ObjectEntry,
    ObjectHead,
    ObjectPage,
    S3ClientError,
    error_from,
    head_from,
    header,
    parse_buckets,
    parse_object_page,
)
from blobstore.core.errors import Corrupt, Invalid, Unavailable
from blobstore.core.s3.sigv4 import canonical_query_string, sign_headers, uri_encode

CHUNK_BYTES = 1024 * 1024
DEFAULT_TIMEOUT_S = 60.0
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)

Progress = Callable[[int], None]
"""Called with the number of bytes transferred so far."""


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


@dataclass(slots=True)
class _Body:
    """What one request sends; ``open`` gives a fresh body per attempt (None: not replayable)."""

    payload_sha256: str = EMPTY_SHA256
    open: Callable[[], object] | None = None
    once: object = None
    length: int | None = 0
    extra_headers: dict[str, str] = field(default_factory=dict)


class S3Client:
    """One endpoint, one key pair, one kept-alive connection; not thread-safe."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str,
                 region: str = "us-east-1", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"endpoint {endpoint!r} is not an http(s)://host:port URL")
        if not access_key or not secret_key:
            raise Invalid("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                          "or pass --dir")
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.timeout_s = timeout_s
        self._https = parts.scheme == "https"
        self._host = parts.netloc
        self._hostname = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._connection: http.client.HTTPConnection | None = None
        self._used = False

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> S3Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- buckets -----------------------------------------------------------------------------

    def list_buckets(self) -> list[BucketEntry]:
        return parse_buckets(self._call("GET", "", "", []))

    def create_bucket(self, bucket: str) -> None:
        self._call("PUT", bucket, "", [])

    def delete_bucket(self, bucket: str) -> None:
        self._call("DELETE", bucket, "", [])

    # -- listing -----------------------------------------------------------------------------

    def list_objects_v2(self, bucket: str, prefix: str = "", delimiter: str = "",
                        max_keys: int = 1000, continuation_token: str | None = None,
                        start_after: str = "") -> ObjectPage:
        query = [("list-type", "2"), ("max-keys", str(max_keys))]
        for name, value in (("prefix", prefix), ("delimiter", delimiter),
                            ("continuation-token", continuation_token or ""),
                            ("start-after", start_after)):
            if value:
                query.append((name, value))
        return parse_object_page(self._call("GET", bucket, "", query), bucket)

    def iter_pages(self, bucket: str, prefix: str = "", delimiter: str = "",
                   page_size: int = 1000) -> Iterator[ObjectPage]:
        """Every page of a listing, following continuation tokens."""
        token: str | None = None
        while True:
            page = self.list_objects_v2(bucket, prefix, delimiter, page_size, token)
            yield page
            if not page.is_truncated:
                return
            token = page.next_token

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectEntry]:
        """Every object under ``prefix``, in key order, page by page."""
        for page in self.iter_pages(bucket, prefix):
            yield from page.entries

    # -- objects -----------------------------------------------------------------------------

    def put_file(self, bucket: str, key: str, path: str | Path,
                 progress: Progress | None = None, content_type: str = "") -> str:
        """Upload a local file; returns the ETag (checked against the file's MD5)."""
        size, sha256_hex, md5 = _hash_file(Path(path))
        headers = {"content-md5": _b64(md5)}
        if content_type:
            headers["content-type"] = content_type
        body = _Body(payload_sha256=sha256_hex, length=size, extra_headers=headers,
                     open=lambda: _ProgressReader(open(path, "rb"), progress))  # noqa: SIM115
        response_headers = self._call_headers("PUT", bucket, key, [], body)
        return _check_etag(response_headers, md5.hexdigest(), f"s3://{bucket}/{key}")

    def put_stream(self, bucket: str, key: str, source: BinaryIO | Iterable[bytes],
                   progress: Progress | None = None, content_type: str = "") -> str:
        """Upload a stream of unknown length (chunked, unsigned payload); returns the ETag."""
        md5 = hashlib.md5(usedforsecurity=False)
        chunks = _counted_chunks(source, md5, progress)
        headers = {"transfer-encoding": "chunked"}
        if content_type:
            headers["content-type"] = content_type
        body = _Body(payload_sha256=UNSIGNED_PAYLOAD, once=chunks, length=None,
                     extra_headers=headers)
        response_headers = self._call_headers("PUT", bucket, key, [], body)
        return _check_etag(response_headers, md5.hexdigest(), f"s3://{bucket}/{key}")

    def get_object(self, bucket: str, key: str, sink: Writable,
                   progress: Progress | None = None) -> ObjectHead:
        """Stream an object into ``sink``; raises Corrupt if the bytes do not match the ETag."""
        response = self._send("GET", bucket, key, [], _Body())
        if response.status >= 300:
            raise error_from(response, self._read(response, -1), f"/{bucket}/{key}")
        head = head_from(response.getheaders())
        md5 = hashlib.md5(usedforsecurity=False)
        done = 0
        try:
            while chunk := self._read(response, CHUNK_BYTES):
                md5.update(chunk)
                sink.write(chunk)  # the sink's own errors (a closed pipe, a full disk) propagate
                done += len(chunk)
                if progress:
                    progress(done)
        finally:
            if not response.isclosed():
                self.close()  # stopped mid-body: this connection cannot be reused
        if done != head.size:
            raise Unavailable(f"s3://{bucket}/{key}: got {done} bytes of {head.size}")
        if head.etag and "-" not in head.etag and md5.hexdigest() != head.etag:
            raise Corrupt(f"s3://{bucket}/{key}: the bytes received do not match the ETag")
        return head

    def _read(self, response: http.client.HTTPResponse, size: int) -> bytes:
        try:
            return response.read(size) if size >= 0 else response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Unavailable(f"reading from {self.endpoint} failed: {exc!r}") from exc

    def head_object(self, bucket: str, key: str) -> ObjectHead:
        return head_from(self._call_headers("HEAD", bucket, key, [], _Body()))

    def delete_object(self, bucket: str, key: str) -> None:
        self._call("DELETE", bucket, key, [])

    def copy_object(self, source_bucket: str, source_key: str, bucket: str, key: str) -> None:
        source = uri_encode(f"/{source_bucket}/{source_key}", encode_slash=False)
        body = _Body(extra_headers={"x-amz-copy-source": source})
        self._call("PUT", bucket, key, [], body)

    # -- transport ---------------------------------------------------------------------------

    def _call(self, method: str, bucket: str, key: str, query: list[tuple[str, str]],
              body: _Body | None = None) -> bytes:
        return self._exchange(method, bucket, key, query, body or _Body())[1]

    def _call_headers(self, method: str, bucket: str, key: str, query: list[tuple[str, str]],
                      body: _Body) -> list[tuple[str, str]]:
        return self._exchange(method, bucket, key, query, body)[0]

    def _exchange(self, method: str, bucket: str, key: str, query: list[tuple[str, str]],
                  body: _Body) -> tuple[list[tuple[str, str]], bytes]:
        response = self._send(method, bucket, key, query, body)
        payload = self._read(response, -1)
        if response.status >= 300:
            resource = f"/{bucket}/{key}" if key else f"/{bucket}"
            raise error_from(response, payload, resource)
        return response.getheaders(), payload

    def _send(self, method: str, bucket: str, key: str, query: list[tuple[str, str]],
              body: _Body) -> http.client.HTTPResponse:
        path = _path(bucket, key)
        for attempt in (1, 2):
            reused = self._used and self._connection is not None
            content = body.open() if body.open else body.once
            try:
                return self._send_once(method, path, query, body, content)
            except _STALE_CONNECTION as exc:
                self.close()
                replayable = body.open is not None or body.once is None
                if attempt == 2 or not reused or not replayable:
                    raise Unavailable(f"{self.endpoint}: {method} {path} failed: {exc!r}") from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise Unavailable(f"cannot reach {self.endpoint}: {exc}") from exc
            finally:
                if hasattr(content, "close"):
                    content.close()  # type: ignore[union-attr]
        raise AssertionError("unreachable")

    def _send_once(self, method: str, path: str, query: list[tuple[str, str]], body: _Body,
                   content: object) -> http.client.HTTPResponse:
        headers = {"host": self._host, **body.extra_headers}
        if body.length is not None:
            headers["content-length"] = str(body.length)
        headers.update(self._signature(method, path, query, headers, body.payload_sha256))
        target = path + ("?" + canonical_query_string(query) if query else "")
        connection = self._connect()
        self._used = True
        connection.request(method, target, body=content, headers=headers,  # type: ignore[arg-type]
                           encode_chunked=body.length is None)
        return connection.getresponse()

    def _signature(self, method: str, path: str, query: list[tuple[str, str]],
                   headers: dict[str, str], payload_sha256: str) -> dict[str, str]:
        signed = {k: v for k, v in headers.items() if k not in ("content-length",
                                                                 "transfer-encoding")}
        return sign_headers(method, path, query, signed, payload_sha256, self.access_key,
                            self.secret_key, self.region, datetime.now(UTC))

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._connection = kind(self._hostname, self._port, timeout=self.timeout_s,
                                    blocksize=CHUNK_BYTES)
            self._used = False
        return self._connection


class _ProgressReader:
    """A binary file that reports how much of it has been read."""

    def __init__(self, handle: BinaryIO, progress: Progress | None) -> None:
        self._handle = handle
        self._progress = progress
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._done += len(data)
        if self._progress and data:
            self._progress(self._done)
        return data

    def close(self) -> None:
        self._handle.close()


def _counted_chunks(source: BinaryIO | Iterable[bytes], md5: hashlib._Hash,
                    progress: Progress | None) -> Iterator[bytes]:
    chunks: Iterable[bytes]
    if hasattr(source, "read"):
        reader = source.read  # type: ignore[union-attr]
        chunks = iter(lambda: reader(CHUNK_BYTES), b"")
    else:
        chunks = source  # type: ignore[assignment]
    done = 0
    for chunk in chunks:
        md5.update(chunk)
        done += len(chunk)
        if progress:
            progress(done)
        yield chunk


def _hash_file(path: Path) -> tuple[int, str, hashlib._Hash]:
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    if size != os.stat(path).st_size:
        raise Invalid(f"{path} changed while it was being read")
    return size, sha256.hexdigest(), md5


def _b64(md5: hashlib._Hash) -> str:
    return base64.b64encode(md5.digest()).decode()


def _check_etag(headers: list[tuple[str, str]], md5_hex: str, where: str) -> str:
    etag = header(headers, "etag").strip('"')
    if etag and "-" not in etag and etag != md5_hex:
        raise Corrupt(f"{where}: the server's ETag {etag} is not the MD5 of the bytes sent")
    return etag


def _path(bucket: str, key: str) -> str:
    if not bucket:
        return "/"
    return "/" + uri_encode(bucket) + ("/" + uri_encode(key, encode_slash=False) if key else "")


__all__ = ["BucketEntry", "ObjectEntry", "ObjectHead", "ObjectPage", "Progress", "S3Client",
           "S3ClientError"]
