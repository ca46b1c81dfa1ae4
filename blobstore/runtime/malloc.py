"""Keep freed buffers in the process instead of handing them back to the kernel each request.

A node moves megabytes per request in buffers of 256 KiB to 4 MiB (socket chunks, shards,
segments). With glibc's defaults each such buffer is either its own mmap or top-of-heap
memory that is trimmed on free, so the next request page-faults fresh zeroed pages in
again: a native py-spy profile of a storage node during 64 MiB PUTs had 24% of its
samples in the HTTP parser's memcpy of the body into new bytes (the faults land there) and
3% in brk. Fixing both thresholds (no mmap below 32 MiB, trim only beyond 256 MiB) lets
freed memory be reused. A/B on fresh clusters, 64 MiB PUT c=4, two 15 s runs per cluster:
off 193 / 188, 186 / 187 MB/s; on 200 / 197, 209 / 209 MB/s; storage system CPU per PUT
127-137 ms off, 101-108 on. 64 MiB GET c=4: 506 -> 547 MB/s. The price is that a
process keeps its peak heap (gateway ~210 MiB after 64 MiB GETs at c=4; ceilings in
tests/integration/test_memory.py still hold).

The heap also grows by ``TOP_PAD_BYTES`` beyond each request (``M_TOP_PAD``; default
128 KiB), so an arena that grows for one request's buffers keeps the room for the next,
and the benchmark client (``blobstore bench``, ``bench/run_matrix.py``), which moves as
many bytes as the gateway, keeps its freed memory too. A/B, ``run_matrix.py --sizes 64MiB
--concurrency 4,32``, alternating runs, GET 64 MiB c=4, B better in 6 of 6 pairs: with
the settings given to every process by environment, 532 / 568 / 598 -> 579 / 579 / 605
MB/s; with only the top pad, 539 / 531 / 585 -> 605 / 641 / 595 MB/s. What it does not
remove: ``perf`` of the storage nodes still puts 15-18% of their file-read samples in
``clear_page_erms`` (fresh zeroed pages for the read buffer), with or without the pad.

glibc only (``mallopt``); elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes

MIB = 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * MIB  # glibc's ceiling for this setting on 64-bit
TRIM_THRESHOLD_BYTES = 256 * MIB
TOP_PAD_BYTES = 64 * MIB


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds and top pad; False where not applicable."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
                and mallopt(_M_TOP_PAD, TOP_PAD_BYTES))
