"""The benchmark's S3 client: aiohttp, one pooled session, SigV4 by our own signer.

What it sends, per request: path-style ``/bucket/key``, ``host`` signed with
``core/s3/sigv4.sign_headers`` and ``x-amz-content-sha256: UNSIGNED-PAYLOAD``, so no body
is hashed on the client (the header is signed; over plain HTTP the body is not protected,
as with any unsigned-payload client). PUT bodies go out from the caller's buffer in
``SEND_CHUNK_BYTES`` slices with flow control (:class:`BufferPayload`), never copied whole.
GET bodies are read to the end as they arrive and hashed on the fly; nothing is kept.

How requests fail: every failure of one request becomes :class:`OpError` with a ``kind``
(``http_<status>``, ``timeout``, ``connection``, ``truncated_body``, ``short_body``,
``long_body``, ``checksum_mismatch``) and a message (the S3 error code when there is one),
so the load generator counts it and goes on. :func:`BenchClient.ensure_bucket` is the
exception: it runs before the benchmark and raises ``Unavailable`` / ``Invalid`` so the
command can refuse to start against a bad endpoint or bad keys.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
import xxhash
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload
from yarl import URL

from blobstore.bench.objects import ObjectRef
from blobstore.core.errors import Invalid, Unavailable
from blobstore.core.s3.sigv4 import UNSIGNED_PAYLOAD, sign_headers, uri_encode
from blobstore.core.s3.sigv4_signing import host_of

SEND_CHUNK_BYTES = 256 * 1024
READ_BUFFER_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
ERROR_BODY_MAX_BYTES = 64 * 1024
_CODE_RE = re.compile(rb"<Code>([^<]{1,64})</Code>")


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send requests and as whom. ``verify_tls=False`` accepts any certificate."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    verify_tls: bool = True

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"endpoint {self.endpoint!r} is not an http:// or https:// URL")
        if not (self.access_key and self.secret_key):
            raise Invalid("no S3 credentials: an access key and a secret key are needed")


class OpError(Exception):
    """One request failed; ``kind`` is what ``errors_by_kind`` counts."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class BufferPayload(Payload):
    """A request body sent from a caller-owned buffer, slice by slice, with back-pressure.

    The buffer must not change until the request has finished (the caller's rule).
    """

    def __init__(self, view: memoryview) -> None:
        super().__init__(view, content_type="application/octet-stream")
        self._view = view
        self._size = view.nbytes

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._view).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter,
                                content_length: int | None) -> None:
        end = self._view.nbytes if content_length is None else min(content_length,
                                                                    self._view.nbytes)
        for offset in range(0, end, SEND_CHUNK_BYTES):
            await writer.write(self._view[offset:min(offset + SEND_CHUNK_BYTES, end)])


def new_session(target: Target, connections: int, timeout_s: float) -> aiohttp.ClientSession:
    """One pooled session for a whole run: at least ``connections`` kept-alive connections."""
    tls: ssl.SSLContext | bool = False
    if urlsplit(target.endpoint).scheme == "https":
        tls = ssl.create_default_context() if target.verify_tls else False
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, ssl=tls,
                                     ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=CONNECT_TIMEOUT_S)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                 read_bufsize=READ_BUFFER_BYTES,
                                 skip_auto_headers=("Accept-Encoding",))


class BenchClient:
    """PUT/GET/DELETE of one bucket's objects; every method is one request."""

    def __init__(self, session: aiohttp.ClientSession, target: Target, bucket: str) -> None:
        self._session = session
        self._target = target
        self.bucket = bucket
        parts = urlsplit(target.endpoint)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._host = host_of(target.endpoint)

    # -- the benchmark's operations: failures raise OpError -----------------------------------

    async def put(self, key: str, body: memoryview) -> None:
        path = self._path(key)
        headers = self._signed("PUT", path)
        headers["Content-Length"] = str(body.nbytes)
        async with _mapped_errors():
            async with self._session.put(self._url(path), data=BufferPayload(body),
                                         headers=headers) as response:
                await _expect(response, 200)
                await response.read()

    async def get(self, ref: ObjectRef) -> int:
        """Read ``ref`` in full and check length and xxh3; returns the bytes read."""
        path = self._path(ref.key)
        hasher = xxhash.xxh3_64()
        received = 0
        async with _mapped_errors():
            async with self._session.get(self._url(path),
                                         headers=self._signed("GET", path)) as response:
                await _expect(response, 200)
                async for chunk in response.content.iter_any():
                    hasher.update(chunk)
                    received += len(chunk)
        if received != ref.size_bytes:
            kind = "short_body" if received < ref.size_bytes else "long_body"
            raise OpError(kind, f"{ref.key}: {received} bytes, expected {ref.size_bytes}")
        if hasher.intdigest() != ref.xxh3:
            raise OpError("checksum_mismatch", f"{ref.key}: content differs from what was put")
        return received

    async def delete(self, key: str) -> None:
        path = self._path(key)
        async with _mapped_errors():
            async with self._session.delete(self._url(path),
                                            headers=self._signed("DELETE", path)) as response:
                await _expect(response, 204, 200)
                await response.read()

    # -- set-up: failures raise domain errors (the run cannot start) ---------------------------

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists; Unavailable/Invalid if the endpoint refuses us."""
        path = self._path("")
        try:
            status, code = await self._simple("HEAD", path)
            if status == 404:
                status, code = await self._simple("PUT", path)
                if status == 409 and code in ("BucketAlreadyOwnedByYou", ""):
                    status = 200
        except OpError as error:
            raise Unavailable(f"cannot reach {self._target.endpoint}: {error.message}") from error
        if status in (401, 403):
            answer = f"HTTP {status} {code}".rstrip()
            raise Invalid(f"{self._target.endpoint} refused our keys ({answer}): check the "
                          "access key, secret key and region")
        if not 200 <= status < 300:
            raise Unavailable(f"{self._target.endpoint}: bucket {self.bucket!r}: HTTP {status} "
                              f"{code}".rstrip())

    async def _simple(self, method: str, path: str) -> tuple[int, str]:
        async with _mapped_errors():
            async with self._session.request(method, self._url(path),
                                             headers=self._signed(method, path)) as response:
                body = await response.content.read(ERROR_BODY_MAX_BYTES)
                return response.status, _s3_code(body)

    # -- helpers ---------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        bucket = f"{self._base_path}/{uri_encode(self.bucket)}"
        return f"{bucket}/{uri_encode(key, encode_slash=False)}" if key else bucket

    def _url(self, path: str) -> URL:
        return URL(self._origin + path, encoded=True)

    def _signed(self, method: str, path: str) -> dict[str, str]:
        headers = {"host": self._host}
        headers.update(sign_headers(method, path, [], headers, UNSIGNED_PAYLOAD,
                                    self._target.access_key, self._target.secret_key,
                                    self._target.region, datetime.now(UTC)))
        return headers


async def _expect(response: aiohttp.ClientResponse, *statuses: int) -> None:
    if response.status in statuses:
        return
    body = await response.content.read(ERROR_BODY_MAX_BYTES)
    code = _s3_code(body)
    raise OpError(f"http_{response.status}", code or response.reason or "unexpected status")


def _s3_code(body: bytes) -> str:
    match = _CODE_RE.search(body)
    return match.group(1).decode("ascii", "replace") if match else ""


@contextlib.asynccontextmanager
async def _mapped_errors() -> AsyncIterator[None]:
    """Turn the ways aiohttp and the OS fail one request into OpError (cause chained)."""
    try:
        yield
    except TimeoutError as error:  # asyncio's and aiohttp's timeouts alike
        raise OpError("timeout", "no answer within the request timeout") from error
    except aiohttp.ClientPayloadError as error:
        raise OpError("truncated_body", str(error) or "body ended early") from error
    except aiohttp.ClientResponseError as error:
        raise OpError(f"http_{error.status}", error.message) from error
    except (aiohttp.ClientError, OSError) as error:
        raise OpError("connection", str(error) or type(error).__name__) from error
