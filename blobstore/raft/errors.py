"""Errors raised by the raft core and its storage, typed by what the caller should do."""

from __future__ import annotations


class RaftError(Exception):
    """Base of every raft error."""


class NotLeader(RaftError):
    """The request needs the leader; ``leader`` is this node's best guess (or None)."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader})")
        self.leader = leader


class ProposalDropped(RaftError):
    """The leader refused the proposal now (transfer in progress, limits, pending change)."""


class StorageError(RaftError):
    """Base of the errors a Storage raises."""


class Compacted(StorageError):
    """The requested index is below the first index: it was compacted into a snapshot."""


class Unavailable(StorageError):
    """The requested index is above the last index."""


class SnapshotTemporarilyUnavailable(StorageError):
    """No snapshot can be produced right now; the leader retries later."""
