"""aws-chunked decoding: AWS's published example, trailers, and malformed frames."""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blobstore.core.s3 import chunked
from blobstore.core.s3.errors import S3Error, SignatureDoesNotMatch
from blobstore.core.s3.sigv4_signing import EMPTY_SHA256, signing_key

# The example of AWS's "Signature Calculations for the Authorization Header: Transferring
# Payload in Multiple Chunks" page: 66560 bytes of 'a' in chunks of 65536, 1024, 0.
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
AMZ_DATE = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"


def context(seed: str = SEED) -> chunked.SigningContext:
    return chunked.SigningContext(signing_key(SECRET, "20130524", "us-east-1"), AMZ_DATE, SCOPE,
                                  seed)


def aws_example_body() -> tuple[bytes, bytes]:
    data = b"a" * 66560
    pieces = [data[:65536], data[65536:], b""]
    wire = b"".join(f"{len(p):x};chunk-signature={sig}\r\n".encode() + p + b"\r\n"
                    for p, sig in zip(pieces, CHUNK_SIGNATURES, strict=True))
    return wire, data


def decode(decoder: chunked.ChunkedDecoder, wire: bytes, step: int) -> bytes:
    out = []
    for i in range(0, len(wire), step):
        out += decoder.feed(wire[i:i + step])
    decoder.finish()
    return b"".join(out)


@pytest.mark.parametrize("step", [1, 7, 1000, 10**6])
def test_aws_published_example_decodes_in_any_split(step):
    wire, data = aws_example_body()
    decoder = chunked.ChunkedDecoder(chunked.SIGNED, context())
    assert decode(decoder, wire, step) == data


def test_a_tampered_chunk_or_wrong_seed_is_refused():
    wire, _ = aws_example_body()
    tampered = wire.replace(b"aaaa", b"aaab", 1)
    with pytest.raises(SignatureDoesNotMatch):
        decode(chunked.ChunkedDecoder(chunked.SIGNED, context()), tampered, 4096)
    with pytest.raises(SignatureDoesNotMatch):
        decode(chunked.ChunkedDecoder(chunked.SIGNED, context("0" * 64)), wire, 4096)


def test_truncated_body_is_incomplete():
    wire, _ = aws_example_body()
    decoder = chunked.ChunkedDecoder(chunked.SIGNED, context())
    decoder.feed(wire[:-10])
    with pytest.raises(S3Error):
        decoder.finish()


def unsigned_trailer_body(data: bytes, chunk: int) -> bytes:
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    body = b"".join(f"{len(p):x}\r\n".encode() + p + (b"\r\n" if p else b"") for p in pieces)
    return body + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()


def test_unsigned_payload_with_checksum_trailer():
    data = bytes(range(256)) * 300
    decoder = chunked.ChunkedDecoder(chunked.UNSIGNED_TRAILER)
    assert decode(decoder, unsigned_trailer_body(data, 10000), 333) == data
    expected = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert decoder.trailers == {"x-amz-checksum-crc32": expected}


def test_signed_trailer():
    key = signing_key(SECRET, "20130524", "us-east-1")
    data = b"hello world" * 1000
    previous, wire = SEED, b""
    for piece in (data[:5000], data[5000:], b""):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", AMZ_DATE, SCOPE, previous, EMPTY_SHA256,
                         hashlib.sha256(piece).hexdigest()])
        previous = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        wire += f"{len(piece):x};chunk-signature={previous}\r\n".encode() + piece
        wire += b"\r\n" if piece else b""
    trailer = "x-amz-checksum-crc32:AAAAAA==\n"
    sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", AMZ_DATE, SCOPE, previous,
                     hashlib.sha256(trailer.encode()).hexdigest()])
    signature = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    wire += f"x-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:{signature}\r\n\r\n".encode()
    decoder = chunked.ChunkedDecoder(chunked.SIGNED_TRAILER, context())
    assert decode(decoder, wire, 999) == data
    bad = wire.replace(b"AAAAAA==", b"BAAAAA==")
    with pytest.raises(SignatureDoesNotMatch):
        decode(chunked.ChunkedDecoder(chunked.SIGNED_TRAILER, context()), bad, 999)


@pytest.mark.parametrize("wire", [
    b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcd\r\n0\r\n\r\n", b"3\nabc\r\n0\r\n\r\n",
    b"f" * 5000 + b"\r\n", b"3\r\nabc\r\n0\r\nno-colon\r\n\r\n",
    b"3;chunk-signature=" + b"0" * 64 + b"\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\r\nextra",
])
def test_malformed_frames_are_refused(wire):
    with pytest.raises(S3Error):
        decode(chunked.ChunkedDecoder(chunked.UNSIGNED_TRAILER), wire, 5)


@settings(max_examples=300, deadline=None)
@given(wire=st.binary(max_size=300), step=st.integers(1, 50))
def test_random_bytes_never_crash_or_hang(wire, step):
    decoder = chunked.ChunkedDecoder(chunked.UNSIGNED_TRAILER)
    try:
        decode(decoder, wire, step)
    except S3Error:
        pass
