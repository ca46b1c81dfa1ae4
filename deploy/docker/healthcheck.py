"""Container health check: GET /_blobstore/healthz of the node named by $BLOBSTORE_ID.

The node listens on its cluster.toml address (a host name that resolves to this
container), not on localhost, so the address is read from the config. Exit 0 if healthy.
"""

import os
import sys

from blobstore.config import load_config
from blobstore.launch.health import probe_healthz

config = load_config(os.environ.get("BLOBSTORE_CONFIG", "/etc/blobstore/cluster.toml"))
node = config.node(os.environ["BLOBSTORE_ID"])
sys.exit(0 if probe_healthz(node.address, timeout_s=2.0) else 1)
