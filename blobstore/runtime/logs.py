"""One-line structured logs: ``ts level node logger message key=value... [request_id=ID]``.

``request_id`` is the id of the client request the line was written for, when there is one
(``runtime/request_id.py``): the same id on the gateway, meta and storage lines of a request.
"""

from __future__ import annotations

import logging
import sys
import time

from blobstore.runtime import request_id


class _OneLine(logging.Formatter):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        message = record.getMessage().replace("\n", "\\n")
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname.lower()} {self.node_id} {record.name} {message}"
        current_request = request_id.current()
        if current_request:
            line += f" request_id={current_request}"
        if record.exc_info:
            line += " exc=" + self.formatException(record.exc_info).replace("\n", "\\n")
        return line


def setup_logging(node_id: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine(node_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
