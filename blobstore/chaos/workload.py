"""The verifying workload: worker threads with real boto3 clients doing PUT, GET, DELETE,
LIST and multipart uploads of seeded content over a fixed key space, recording every
operation in a History and checking every read against it.

Rules:
- A PUT writes generation g of a key (content from ``content.object_bytes``) and records
  it before sending; its outcome is ``ok`` on 2xx, ``failed`` on a 4xx (nothing changed),
  ``unknown`` on anything else (5xx, timeout, lost connection): it may have happened.
- A GET's body must be, byte for byte, the content of a generation that was legal for the
  read's interval (``History.check_read``); a 404 must be legal as "absent". Anything else
  is a wrong read. A GET that fails (5xx, timeout) is an error, not a wrong read.
- Workers stop at ``deadline``; every loop is bounded by it.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from blobstore.chaos.burst import BurstResult, run_burst
from blobstore.chaos.content import TAG_BYTES, object_bytes
from blobstore.chaos.history import ABSENT, History

MIB = 1024 * 1024
_TAG_RE = re.compile(rb"gen=(\d+) ")
SIZES = (0, 1, 1000, 70_000, 300_000, 2 * MIB + 5)
MULTIPART_FIRST_PART = 5 * MIB  # S3's minimum for every part but the last


@dataclass(frozen=True)
class Target:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    verify: str | bool = True
    region: str = "us-east-1"


def make_client(target: Target, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3", endpoint_url=target.endpoint, region_name=target.region,
        aws_access_key_id=target.access_key, aws_secret_access_key=target.secret_key,
        verify=target.verify,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      signature_version="s3v4",
                      connect_timeout=timeout_s, read_timeout=timeout_s))


def _outcome(error: Exception) -> tuple[str, str]:
    """(outcome, error kind) of a failed request."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.response.get("Error", {}).get("Code", "?")
        if 400 <= status < 500 and status not in (408, 409, 429):
            return "failed", f"{status} {code}"
        return "unknown", f"{status} {code}"
    return "unknown", type(error).__name__


class Workload:
    def __init__(self, target: Target, history: History, seed: int, keys: int = 64,
                 sizes: tuple[int, ...] = SIZES) -> None:
        self.target = target
        self.history = history
        self.seed = seed
        self.keys = [f"chaos/k{number:04d}" for number in range(keys)]
        self.sizes = sizes
        self._generation = 0
        self._lock = threading.Lock()

    def next_generation(self) -> int:
        with self._lock:
            self._generation += 1
            return self._generation

    def run(self, workers: int, deadline: float) -> None:
        threads = [threading.Thread(target=self._worker, args=(n, deadline), daemon=True,
                                    name=f"chaos-worker-{n}") for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(1.0, deadline - time.monotonic() + 60))

    def _worker(self, number: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + number)
        client = make_client(self.target)
        while time.monotonic() < deadline:
            key = rng.choice(self.keys)
            roll = rng.random()
            if roll < 0.40:
                self.put(client, key, rng.choice(self.sizes))
            elif roll < 0.80:
                self.get(client, key)
            elif roll < 0.87:
                self.delete(client, key)
            elif roll < 0.89:
                self.put_multipart(client, key)
            else:
                self.list(client)

    def put(self, client, key: str, size: int) -> None:  # type: ignore[no-untyped-def]
        generation = self.next_generation()
        body = object_bytes(self.seed, key, generation, size)
        write = self.history.begin_write(key, generation, size, time.monotonic())
        try:
            client.put_object(Bucket=self.target.bucket, Key=key, Body=body)
        except (ClientError, BotoCoreError) as error:
            outcome, kind = _outcome(error)
            self.history.end_write(write, outcome, time.monotonic())
            self.history.count("put", kind)
            return
        self.history.end_write(write, "ok", time.monotonic())
        self.history.count("put")

    def put_multipart(self, client, key: str) -> None:  # type: ignore[no-untyped-def]
        """A two-part multipart upload (5 MiB + a small last part) as one write."""
        generation = self.next_generation()
        size = MULTIPART_FIRST_PART + 1000
        body = object_bytes(self.seed, key, generation, size)
        write = self.history.begin_write(key, generation, size, time.monotonic())
        upload_id = None
        try:
            upload_id = client.create_multipart_upload(Bucket=self.target.bucket,
                                                       Key=key)["UploadId"]
            etags = []
            for number, (start, end) in enumerate(((0, MULTIPART_FIRST_PART),
                                                   (MULTIPART_FIRST_PART, size)), start=1):
                etags.append(client.upload_part(Bucket=self.target.bucket, Key=key,
                                                UploadId=upload_id, PartNumber=number,
                                                Body=body[start:end])["ETag"])
            client.complete_multipart_upload(
                Bucket=self.target.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                           for n, e in enumerate(etags, start=1)]})
        except (ClientError, BotoCoreError) as error:
            outcome, kind = _outcome(error)
            # Only the completion can make the object appear; before it, nothing changed.
            self.history.end_write(write, outcome if upload_id else "failed", time.monotonic())
            self.history.count("multipart", kind)
            return
        self.history.end_write(write, "ok", time.monotonic())
        self.history.count("multipart")

    def delete(self, client, key: str) -> None:  # type: ignore[no-untyped-def]
        write = self.history.begin_write(key, ABSENT, 0, time.monotonic())
        try:
            client.delete_object(Bucket=self.target.bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            outcome, kind = _outcome(error)
            self.history.end_write(write, outcome, time.monotonic())
            self.history.count("delete", kind)
            return
        self.history.end_write(write, "ok", time.monotonic())
        self.history.count("delete")

    def get(self, client, key: str) -> bool:  # type: ignore[no-untyped-def]
        """One verified read; False only for a wrong read."""
        start = time.monotonic()
        try:
            body = client.get_object(Bucket=self.target.bucket, Key=key)["Body"].read()
        except ClientError as error:
            end = time.monotonic()
            if error.response.get("Error", {}).get("Code") == "NoSuchKey":
                self.history.count("get")
                return self.history.check_read(key, start, end, {ABSENT}, "404")
            self.history.count("get", _outcome(error)[1])
            return True
        except BotoCoreError as error:
            self.history.count("get", type(error).__name__)
            return True
        end = time.monotonic()
        self.history.count("get")
        return self.verify_body(key, body, start, end)

    def verify_body(self, key: str, body: bytes, start: float, end: float) -> bool:
        candidates = self.generations_of(key, body)
        detail = f"{len(body)} B" if candidates else f"unrecognisable {len(body)} B"
        return self.history.check_read(key, start, end, candidates or {-2}, detail)

    def generations_of(self, key: str, body: bytes) -> set[int]:
        """Every generation whose exact bytes these are: one for a tagged body, possibly
        several for bodies shorter than the tag (all 0-byte writes look alike)."""
        if len(body) >= TAG_BYTES:
            match = _TAG_RE.match(body[:TAG_BYTES])
            candidates = [int(match.group(1))] if match else []
        else:
            candidates = [w.generation for w in self.history.writes_of(key)
                          if w.size == len(body) and w.generation != ABSENT]
        return {generation for generation in candidates
                if (size := self.history.size_of(key, generation)) == len(body)
                and object_bytes(self.seed, key, generation, size) == body}

    def list(self, client) -> None:  # type: ignore[no-untyped-def]
        try:
            client.list_objects_v2(Bucket=self.target.bucket, Prefix="chaos/", MaxKeys=50)
            self.history.count("list")
        except (ClientError, BotoCoreError) as error:
            self.history.count("list", _outcome(error)[1])


def burst(target: Target, key: str, workers: int, seconds: float) -> BurstResult:
    """``workers`` keep-alive connections GET ``key`` (presigned by boto3) as fast as they
    can for ``seconds``, from a process of their own (``chaos/burst.py`` says why)."""
    url = make_client(target).generate_presigned_url(
        "get_object", Params={"Bucket": target.bucket, "Key": key}, ExpiresIn=3600)
    return run_burst(url, target.verify, workers, seconds)
