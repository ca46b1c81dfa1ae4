"""Ready: everything the core asks the application to do, in the order it must do it.

The application handles a Ready in one function, in this order:
1. persist ``snapshot`` (if any), ``entries`` and ``hard_state``, then fsync once if
   ``must_sync`` (group commit);
2. send ``messages`` (only after step 1 is durable: votes, acks and appends all depend on it);
3. restore the state machine from ``snapshot`` (if any), then apply ``committed_entries`` in
   order (calling ``node.apply_conf_change`` for CONF_CHANGE entries);
4. release reads in ``read_states`` once ``applied >= index``;
5. ``node.advance(ready)``; only then ask for the next Ready.

Because messages are delivered only after persisting, everything a message depends on (the
vote it grants, the entries it acknowledges) is durable before any peer can act on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from blobstore.raft.messages import (
    Entry,
    HardState,
    Message,
    ReadState,
    Role,
    Snapshot,
    SoftState,
)


@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of work for the application (see module docstring for the order)."""

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    must_sync: bool = False


@dataclass(frozen=True, slots=True)
class ProgressView:
    """The leader's view of one peer (immutable copy)."""

    match: int
    next: int
    state: str


@dataclass(frozen=True, slots=True)
class Status:
    """An immutable snapshot of a node's state, for operators, tests and checkers."""

    id: str
    term: int
    leader: str | None
    role: Role
    commit: int
    applied: int
    last_index: int
    progress: dict[str, ProgressView] = field(default_factory=dict)
    vote: str | None = None
    voters: tuple[str, ...] = ()
