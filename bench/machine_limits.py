"""This machine's own limits: disk with fsync, loopback HTTP, hashing and zfec per core.

    python bench/machine_limits.py [--data-dir DIR] [--seconds 2] [--json]
        [--no-disk] [--no-network] [--no-cpu]

Run the disk probes on the disk the store keeps its data on (``--data-dir``; default
``./blobstore-data`` when it exists, else the system's temporary directory). What each
probe measures, and why, is in ``blobstore/bench/limits.py``; ``bench/run_matrix.py``
runs the same probes in the same run as the benchmark matrix.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from blobstore.bench.limits import MachineLimits, measure_machine
from blobstore.bench.report import text_table


def default_data_dir() -> Path:
    local = Path("blobstore-data")
    return local if local.is_dir() else Path(tempfile.gettempdir())


def limits_table(limits: MachineLimits) -> str:
    rows = [[m.name, f"{m.value:,.1f}", m.unit, m.what] for m in limits.measurements]
    return (text_table(("probe", "value", "unit", "what"), rows, left_columns=(0, 2, 3))
            + f"\n{limits.cpus} usable CPUs; disk probes in {limits.data_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the disk probes write (and then delete) their files")
    parser.add_argument("--seconds", type=float, default=2.0, help="per probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-disk", action="store_true")
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--no-cpu", action="store_true")
    args = parser.parse_args()
    limits = measure_machine(args.data_dir or default_data_dir(), args.seconds, args.seed,
                             disk=not args.no_disk, network=not args.no_network,
                             cpu=not args.no_cpu)
    print(json.dumps(limits.to_json()) if args.json else limits_table(limits))


if __name__ == "__main__":
    main()
