"""``blobstore``: the command line (click). Commands parse, call and print; nothing more.

Exit codes: 0 ok, 1 operation failed (``error: ...`` on stderr, no traceback), 2 usage error.
"""

from __future__ import annotations

import click

from blobstore import __version__
from blobstore.cli import bench, chaos, cluster, data, heal, meta, node, ops, users


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="blobstore")
def main() -> None:
    """A replicated, self-healing, erasure-coded blob store with an S3 API.

    \b
    Example (a whole cluster on this machine):
      blobstore up --detach
      blobstore mb s3://photos
      blobstore cp ./cat.jpg s3://photos/cat.jpg
      blobstore status
      blobstore down
    """


for _command in (cluster.init, cluster.up, cluster.down, cluster.serve, ops.status,
                 ops.locate, data.cp, data.ls, data.mb, data.rb, data.rm, data.cat, meta.meta,
                 node.node,
                 bench.bench, users.user, heal.scrub, heal.repair, heal.fsck,
                 chaos.chaos):
    main.add_command(_command)
