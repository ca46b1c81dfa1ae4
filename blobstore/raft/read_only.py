"""ReadIndex requests waiting for the leader to confirm it is still the leader.

Protocol (Raft thesis §6.4, etcd's ReadOnlySafe):
1. A leader that has not yet committed an entry of its own term does not know the true
   commit index; it queues the request until its first entry (the NOOP) commits.
2. The leader records ``index = committed`` with the request's context, and broadcasts a
   heartbeat round carrying the context.
3. When a quorum (counting itself) has answered a heartbeat carrying that context, no other
   leader can have committed anything newer at the time of the request: the request and
   every one queued before it are answered with their recorded index.
4. The read may be served once the serving node's ``applied >= index``.

Invariants: ``queue`` holds the contexts of ``pending`` in arrival order; contexts are
unique (a repeated context is ignored); everything is dropped when the node's term or role
changes (the requesters time out and retry).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReadRequest:
    """One ReadIndex request: who asked (``requester``), its index and the acks so far."""

    context: bytes
    requester: str
    index: int
    acks: set[str] = field(default_factory=set)


class ReadOnly:
    """The pending ReadIndex requests of a leader."""

    def __init__(self) -> None:
        self.pending: dict[bytes, ReadRequest] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, context: bytes, requester: str) -> bool:
        """Record a request; returns False if the context is already pending."""
        if context in self.pending:
            return False
        self.pending[context] = ReadRequest(context=context, requester=requester, index=index)
        self.queue.append(context)
        return True

    def recv_ack(self, node_id: str, context: bytes) -> set[str] | None:
        """Count a heartbeat answer; returns the acks for ``context`` (None if unknown)."""
        request = self.pending.get(context)
        if request is None:
            return None
        request.acks.add(node_id)
        return request.acks

    def advance(self, context: bytes) -> list[ReadRequest]:
        """Release the request for ``context`` and every request queued before it."""
        if context not in self.pending:
            return []
        position = self.queue.index(context)
        released = [self.pending.pop(c) for c in self.queue[: position + 1]]
        del self.queue[: position + 1]
        return released

    def last_pending_context(self) -> bytes:
        return self.queue[-1] if self.queue else b""

    def reset(self) -> None:
        self.pending.clear()
        self.queue.clear()
