"""aws-chunked request bodies: a sans-IO decoder with chunk-signature and trailer checks.

Wire format (one chunk per line pair; sizes in hex)::

    <size>[;chunk-signature=<64 hex>]\\r\\n<size bytes>\\r\\n     ... repeated ...
    0[;chunk-signature=<64 hex>]\\r\\n
    [<trailer-name>:<value>\\r\\n ...]                           (the *-TRAILER forms)
    [x-amz-trailer-signature:<64 hex>\\r\\n]                     (signed trailer form)
    \\r\\n

Which form a body has is decided by the SIGNED ``x-amz-content-sha256`` value (never by the
unsigned Content-Encoding header):

- ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``: every chunk carries a signature chained from the
  request's seed signature: ``HMAC(key, "AWS4-HMAC-SHA256-PAYLOAD\\n" + date + "\\n" +
  scope + "\\n" + previous + "\\n" + SHA256("") + "\\n" + SHA256(chunk))``.
- ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER``: as above, then trailers signed with
  ``"AWS4-HMAC-SHA256-TRAILER\\n" + date + "\\n" + scope + "\\n" + previous + "\\n" +
  SHA256(trailer lines)``.
- ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``: no chunk signatures; trailers (the checksum) are
  verified by the caller against the data.

Rules: the decoder holds at most one header line (bounded by ``MAX_LINE_BYTES``), never a
whole chunk; chunk data is handed out as it arrives and its signature is checked at the
chunk's end, before any later byte is accepted. Anything malformed, truncated or too long
raises an S3Error; ``feed`` never loops without consuming input.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

from blobstore.core.s3.errors import IncompleteBody, InvalidRequest, SignatureDoesNotMatch
from blobstore.core.s3.sigv4_signing import EMPTY_SHA256

MAX_LINE_BYTES = 4096
MAX_TRAILER_BYTES = 16 * 1024
MAX_CHUNK_BYTES = 64 * 1024 * 1024
SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_HEADER_RE = re.compile(rb"([0-9a-fA-F]{1,16})(?:;chunk-signature=([0-9a-f]{64}))?")
_TRAILER_NAME_RE = re.compile(r"[a-z0-9-]{1,128}")


def _malformed(what: str) -> InvalidRequest:
    return InvalidRequest(f"malformed aws-chunked body: {what}")


@dataclass
class SigningContext:
    """What chunk signatures chain from: the request's seed signature and scope."""

    key: bytes
    amz_date: str
    scope: str
    seed_signature: str


@dataclass
class ChunkedDecoder:
    mode: str
    signing: SigningContext | None = None
    trailers: dict[str, str] = field(default_factory=dict)
    done: bool = False
    decoded_bytes: int = 0
    _buffer: bytearray = field(default_factory=bytearray)
    _state: str = "header"  # header | data | data_crlf | trailer
    _remaining: int = 0
    _chunk_signature: str = ""
    _chunk_hash: object = None
    _previous: str = ""
    _trailer_bytes: int = 0
    _trailer_lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in (SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER):
            raise _malformed(f"unknown mode {self.mode}")
        if self.mode != UNSIGNED_TRAILER and self.signing is None:
            raise _malformed("signed chunks need a signing context")
        self._previous = self.signing.seed_signature if self.signing else ""

    @property
    def signed(self) -> bool:
        return self.mode != UNSIGNED_TRAILER

    def feed(self, data: bytes) -> list[bytes]:
        """Consume wire bytes; return the decoded payload pieces they completed."""
        if self.done:
            if data:
                raise _malformed("bytes after the final chunk")
            return []
        out: list[bytes] = []
        view = memoryview(data)
        while view and not self.done:
            if self._state == "data":
                take = min(self._remaining, len(view))
                piece = bytes(view[:take])
                view = view[take:]
                self._remaining -= take
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)  # type: ignore[attr-defined]
                self.decoded_bytes += take
                out.append(piece)
                if self._remaining == 0:
                    self._finish_chunk_data()
                continue
            view = self._consume_line(view)
        return out

    def finish(self) -> None:
        """The wire ended: anything but a complete body is an error."""
        if not self.done:
            raise IncompleteBody("the aws-chunked body ended before its final chunk")

    # -- lines ---------------------------------------------------------------------------

    def _consume_line(self, view: memoryview) -> memoryview:
        """Take bytes up to and including the next LF; a line must end in CRLF."""
        newline = bytes(view[: MAX_LINE_BYTES + 2]).find(b"\n")
        if newline < 0:
            self._buffer += view
            if len(self._buffer) > MAX_LINE_BYTES + 1:
                raise _malformed("a line is too long")
            return view[len(view):]
        self._buffer += view[:newline]
        line = bytes(self._buffer)
        self._buffer.clear()
        if not line.endswith(b"\r") or len(line) > MAX_LINE_BYTES + 1:
            raise _malformed("a line without CRLF, or too long")
        self._handle_line(line[:-1])
        return view[newline + 1:]

    def _handle_line(self, line: bytes) -> None:
        if self._state == "header":
            self._start_chunk(line)
        elif self._state == "data_crlf":
            if line:
                raise _malformed("chunk data longer than its size")
            self._state = "header"
        else:
            self._trailer_line(line)

    def _start_chunk(self, line: bytes) -> None:
        match = _HEADER_RE.fullmatch(line)
        if match is None:
            raise _malformed(f"bad chunk header {line[:80]!r}")
        size = int(match.group(1), 16)
        signature = (match.group(2) or b"").decode()
        if size > MAX_CHUNK_BYTES:
            raise _malformed("a chunk is too large")
        if self.signed and not signature:
            raise SignatureDoesNotMatch("a chunk of a signed stream has no signature")
        if not self.signed and signature:
            raise _malformed("a chunk signature in an unsigned stream")
        self._chunk_signature = signature
        self._chunk_hash = hashlib.sha256() if self.signed else None
        self._remaining = size
        if size == 0:
            self._finish_chunk_data()
            self._state = "trailer"  # for the plain signed form: just the closing CRLF
            return
        self._state = "data"

    def _finish_chunk_data(self) -> None:
        if self.signed:
            assert self.signing is not None and self._chunk_hash is not None
            digest = self._chunk_hash.hexdigest()  # type: ignore[attr-defined]
            string_to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.signing.amz_date,
                                        self.signing.scope, self._previous, EMPTY_SHA256,
                                        digest])
            expected = hmac.new(self.signing.key, string_to_sign.encode(),
                                hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self._chunk_signature):
                raise SignatureDoesNotMatch("a chunk signature does not match its data")
            self._previous = expected
        if self._remaining == 0 and self._state == "data":
            self._state = "data_crlf"

    def _trailer_line(self, line: bytes) -> None:
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > MAX_TRAILER_BYTES:
            raise _malformed("trailers are too large")
        if not line:
            self._end_trailers()
            return
        text = line.decode("utf-8", "strict") if line.isascii() else None
        if text is None or ":" not in text:
            raise _malformed("bad trailer line")
        name, _, value = text.partition(":")
        name = name.strip().lower()
        if not _TRAILER_NAME_RE.fullmatch(name):
            raise _malformed("bad trailer name")
        if name == "x-amz-trailer-signature":
            self.trailers[name] = value.strip()
            return
        if name in self.trailers:
            raise _malformed(f"repeated trailer {name}")
        self.trailers[name] = value.strip()
        self._trailer_lines.append(f"{name}:{value.strip()}\n")

    def _end_trailers(self) -> None:
        signature = self.trailers.pop("x-amz-trailer-signature", None)
        if self.mode == SIGNED and (self.trailers or signature):
            raise _malformed("trailers in a stream that announced none")
        if self.mode == SIGNED_TRAILER:
            if signature is None:
                raise SignatureDoesNotMatch("signed trailers without x-amz-trailer-signature")
            assert self.signing is not None
            digest = hashlib.sha256("".join(self._trailer_lines).encode()).hexdigest()
            string_to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.signing.amz_date,
                                        self.signing.scope, self._previous, digest])
            expected = hmac.new(self.signing.key, string_to_sign.encode(),
                                hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, signature):
                raise SignatureDoesNotMatch("the trailer signature does not match")
        elif signature is not None:
            raise _malformed("a trailer signature in an unsigned stream")
        self.done = True
