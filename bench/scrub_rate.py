"""Unthrottled scrub rate of one storage node, in MB/s of shard payload verified.

Fills a shard store (the storage node's own ``ShardStore``, on this machine's disk) with
``--size-mib`` of real 4+2 shards, then times full passes of the node's ``Scrubber`` with
``rate_bytes_per_s=0``, exactly the code a node runs (``blobstore/bench/scrub.py``, also a
row of ``run_matrix.py``): ``warm`` (files in the page cache) and ``cold`` (each file
dropped from the page cache first, so the pass reads the disk), next to a raw read of the
same files.

    python bench/scrub_rate.py [--size-mib 1024] [--shard-kib 1024] [--dir /var/tmp] [--json]

MB = 10^6 bytes. Target on the reference machine: >= 300 MB/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from blobstore.bench.scrub import KIB, MIB, measure_scrub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--shard-kib", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where to put the store (a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="scrub-bench-") as root:
        result = measure_scrub(Path(root) / "store", args.size_mib * MIB, args.shard_kib * KIB)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"scrub of {result['payload_bytes'] / 1e6:.0f} MB in {result['shards']} shards: "
              f"warm {result['warm']['mb_per_s']} MB/s (raw read "
              f"{result['raw_read_warm']['mb_per_s']}), cold {result['cold']['mb_per_s']} MB/s "
              f"(raw read {result['raw_read_cold']['mb_per_s']}); target >= 300 MB/s")


if __name__ == "__main__":
    main()
