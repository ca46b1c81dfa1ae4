"""Sizes and durations as people type them on a benchmark command line, and back.

Rules:
- Binary units are powers of 2 (``KiB`` = 2**10, ``MiB`` = 2**20, ``GiB`` = 2**30), decimal
  units powers of 10 (``kB``/``KB``/``k`` = 10**3, ``MB``/``M`` = 10**6, ``GB``/``G`` =
  10**9); units are case-insensitive; a bare number or ``B`` is bytes. Fractions are
  allowed (``1.5MiB``) and rounded down to whole bytes.
- Throughput is reported in MB/s with MB = 10**6 bytes (SPEC §2); sizes are shown in the
  largest binary unit that divides them (``64MiB``, ``4KiB``, ``1000B``).
- Durations: a bare number or ``s`` is seconds; ``ms``, ``m``/``min``, ``h`` too.
Anything else raises ``Invalid`` naming the text, never a bare ValueError.
"""

from __future__ import annotations

import re

from blobstore.core.errors import Invalid

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
MB = 1000 * 1000

_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": KIB, "m": MB, "mb": MB,
               "mib": MIB, "g": 1000 * MB, "gb": 1000 * MB, "gib": GIB}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
_QUANTITY_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*")


def parse_size_bytes(text: str) -> int:
    """``"4KiB"`` -> 4096, ``"1MB"`` -> 1000000, ``"65536"`` -> 65536."""
    match = _QUANTITY_RE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise Invalid(f"size {text!r} is not a number with an optional unit "
                      "(B, KiB, MiB, GiB, kB, MB, GB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration_s(text: str) -> float:
    """``"10"`` / ``"10s"`` -> 10.0, ``"500ms"`` -> 0.5, ``"2m"`` -> 120.0."""
    match = _QUANTITY_RE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _DURATION_UNITS:
        raise Invalid(f"duration {text!r} is not a number with an optional unit (ms, s, m, h)")
    return float(match.group(1)) * _DURATION_UNITS[unit]


def format_size(size_bytes: int) -> str:
    """The shortest exact binary spelling: 67108864 -> ``64MiB``, 1000 -> ``1000B``."""
    for unit, factor in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size_bytes and size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return f"{size_bytes}B"


def mb_per_s(size_bytes: float, seconds: float) -> float:
    """Throughput in MB/s (10**6 bytes per second); 0 for an empty interval."""
    return size_bytes / seconds / MB if seconds > 0 else 0.0
