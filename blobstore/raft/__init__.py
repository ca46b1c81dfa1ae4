"""A sans-IO Raft core in the style of etcd-io/raft (see docs/raft.md for the contract).

Pure: no sockets, clocks, files, threads or global randomness. The application feeds it
ticks, messages and proposals and carries out each ``Ready``: persist, send, apply, advance.
"""

from blobstore.raft.errors import (
    Compacted,
    NotLeader,
    ProposalDropped,
    RaftError,
    SnapshotTemporarilyUnavailable,
    StorageError,
    Unavailable,
)
from blobstore.raft.messages import (
    ConfChange,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMeta,
    SoftState,
    decode_conf_change,
    decode_message,
    encode_conf_change,
    encode_message,
)
from blobstore.raft.node import RaftConfig, RaftNode, Rng
from blobstore.raft.ready import ProgressView, Ready, Status
from blobstore.raft.storage import MemoryStorage, Storage

__all__ = [
    "Compacted",
    "ConfChange",
    "ConfState",
    "Entry",
    "EntryKind",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NotLeader",
    "ProgressView",
    "ProposalDropped",
    "RaftConfig",
    "RaftError",
    "RaftNode",
    "ReadState",
    "Ready",
    "Rng",
    "Snapshot",
    "SnapshotMeta",
    "SnapshotTemporarilyUnavailable",
    "SoftState",
    "Status",
    "Storage",
    "StorageError",
    "Unavailable",
    "decode_conf_change",
    "decode_message",
    "encode_conf_change",
    "encode_message",
]
