"""Committed metadata commands per second, and their commit latency.

Starts a real cluster (3 meta replicas by default), then drives ``put_object`` commands
(a 0-byte object version: the smallest real command, one LMDB write per replica) from many
concurrent clients straight at the meta service, as gateways do
(``blobstore/bench/meta_commits.py``, also a row of ``run_matrix.py``). Every command is
answered only after a majority of replicas fsync'd it and the leader applied it.

    python bench/meta_commits.py [--meta 3] [--concurrency 64] [--duration 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile

from blobstore.bench.meta_commits import run_drive
from blobstore.core.records import NodeRole
from blobstore.testing.processes import Cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meta", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root, \
            Cluster(root, meta=args.meta, storage=6, gateway=0) as cluster:
        addresses = [n.address for n in cluster.config.by_role(NodeRole.META)]
        result = run_drive(addresses, cluster.config.secret, args.concurrency, args.duration)
    result.update({"meta_replicas": args.meta, "concurrency": args.concurrency})
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['commands_per_s']} commands/s with {args.meta} meta replicas, "
              f"concurrency {args.concurrency}; latency ms p50 {result['latency_ms']['p50']} "
              f"p99 {result['latency_ms']['p99']} max {result['latency_ms']['max']}; "
              f"errors {result['errors']}")


if __name__ == "__main__":
    main()
