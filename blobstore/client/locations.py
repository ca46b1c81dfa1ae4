"""Where data commands read and write: ``s3://bucket/key``, a local path, or ``-``.

Rules (those of ``aws s3``):
- ``s3://bucket`` and ``s3://bucket/`` name a bucket with an empty key; a key that is empty or
  ends in ``/`` names a "directory" (a prefix) to which a file's base name is appended.
- ``-`` is stdin as a source and stdout as a destination; it never combines with ``-r``.
- A bucket name is not validated here beyond being non-empty and free of ``/``: the server
  is the one authority on names, and its error says what is wrong.
- Any other text is a local path. A local-to-local copy is refused (use ``cp(1)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from blobstore.core.errors import Invalid

SCHEME = "s3://"
STD_STREAM = "-"


class UsageProblem(Invalid):
    """The command line names something that cannot work (an exit-2 usage error)."""

    code = "UsageError"


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    key: str = ""

    @property
    def is_prefix(self) -> bool:
        """True when the key is empty or ends in ``/`` (a directory, not an object)."""
        return not self.key or self.key.endswith("/")

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, self.key + name)

    def as_directory(self) -> str:
        """The key as a prefix that ends in ``/`` (or empty for the whole bucket)."""
        return self.key if self.is_prefix else self.key + "/"

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class LocalLocation:
    path: str

    @property
    def is_std_stream(self) -> bool:
        return self.path == STD_STREAM

    def __str__(self) -> str:
        return self.path


Location = S3Location | LocalLocation


def parse_s3_url(text: str) -> S3Location:
    """``s3://bucket[/key]`` -> S3Location; UsageProblem for anything else."""
    if not text.startswith(SCHEME):
        raise UsageProblem(f"{text!r} is not an s3://bucket[/key] URL")
    bucket, _, key = text[len(SCHEME):].partition("/")
    if not bucket:
        raise UsageProblem(f"{text!r} names no bucket")
    return S3Location(bucket, key)


def parse_location(text: str) -> Location:
    if text.startswith(SCHEME):
        return parse_s3_url(text)
    if not text:
        raise UsageProblem("an empty path")
    return LocalLocation(text)


def require_object(location: S3Location) -> S3Location:
    """The location must name one object (a non-empty key not ending in ``/``)."""
    if location.is_prefix:
        raise UsageProblem(f"{location} names no object key")
    return location


def require_bucket_only(location: S3Location) -> S3Location:
    if location.key:
        raise UsageProblem(f"{location} should name a bucket only (s3://bucket)")
    return location


def check_copy(source: Location, destination: Location, recursive: bool) -> None:
    """Refuse combinations that cannot work, before anything is transferred."""
    if isinstance(source, LocalLocation) and isinstance(destination, LocalLocation):
        raise UsageProblem("one of SRC and DST must be an s3:// URL")
    for location in (source, destination):
        if isinstance(location, LocalLocation) and location.is_std_stream and recursive:
            raise UsageProblem("'-' (stdin/stdout) cannot be used with -r")
    if isinstance(source, LocalLocation) and source.is_std_stream:
        assert isinstance(destination, S3Location)
        require_object(destination)
    if isinstance(source, S3Location) and not recursive:
        require_object(source)
