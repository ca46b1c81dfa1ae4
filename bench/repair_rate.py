"""Repair throughput after a storage node is lost: MB/s rebuilt by the whole cluster.

Starts a real cluster (1 meta, 8 storage, 1 gateway, EC 4+2, repair unthrottled), uploads
``--size-mib`` of distinct data, loses one storage node for good and times the repair until
the backlog is 0 (``blobstore/bench/repair.py``, also a row of ``run_matrix.py``):
``user_data_mb_per_s`` (user data of the segments that lost a shard, restored to full
redundancy, per second) and ``shard_mb_per_s`` (shard bytes re-created per second).

    python bench/repair_rate.py [--size-mib 1024] [--concurrency 4] [--segment-mib 4] [--json]

MB = 10^6 bytes. Target on the reference machine: >= 100 MB/s of user data.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from blobstore.bench.repair import MIB, measure_repair
from blobstore.testing.processes import Cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--segment-mib", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="repair_concurrency")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="repair-bench-") as root:
        result = measure_repair(Cluster, Path(root), args.size_mib * MIB, args.segment_mib * MIB,
                                args.concurrency)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"lost {result['victim']}: {result['lost_shards']} shards, "
              f"{result['lost_shard_bytes'] / 1e6:.0f} MB; rebuilt in {result['seconds']} s: "
              f"{result['user_data_mb_per_s']} MB/s of user data made whole "
              f"({result['shard_mb_per_s']} MB/s of shards re-created; target >= 100 MB/s)")


if __name__ == "__main__":
    main()
