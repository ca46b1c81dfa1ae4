"""Load generator, latency statistics, machine-limit probes and reports (SPEC §7).

``blobstore bench`` (``cli/bench.py``) runs one phase through :func:`run_once`;
``bench/run_matrix.py`` runs the standard matrix through :func:`run_matrix`. Modules:
``loadgen`` (workers and phases), ``s3`` (the aiohttp S3 client), ``payload`` (distinct
bodies from reused buffers), ``objects``, ``stats``, ``units``, ``report`` (text),
``limits`` and ``loopback`` (the machine's own ceilings), ``matrix`` and
``matrix_report`` (Markdown and chart).
"""

from blobstore.bench.loadgen import BenchSpec, LoadGenerator, Op, run_once
from blobstore.bench.matrix import MatrixPlan, run_matrix
from blobstore.bench.s3 import Target
from blobstore.bench.stats import BenchResult

__all__ = ["BenchResult", "BenchSpec", "LoadGenerator", "MatrixPlan", "Op", "Target",
           "run_matrix", "run_once"]
