"""Majority arithmetic: the committed index of a configuration and vote tallies.

Rule: a quorum of ``n`` voters is ``n // 2 + 1``. Any two quorums of one configuration
intersect; a single-server change keeps that true between the old and new configuration,
which is why membership changes add or remove one voter at a time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence


class VoteResult(enum.Enum):
    """Outcome of an election tally so far."""

    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum_size(voters: int) -> int:
    return voters // 2 + 1


def committed_index(voters: Sequence[str], match: Mapping[str, int]) -> int:
    """The largest index that a quorum of ``voters`` has (0 with no voters)."""
    if not voters:
        return 0
    indexes = sorted((match.get(v, 0) for v in voters), reverse=True)
    return indexes[quorum_size(len(voters)) - 1]


def vote_result(voters: Sequence[str], votes: Mapping[str, bool]) -> VoteResult:
    """WON once a quorum granted, LOST once a quorum can no longer grant."""
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    need = quorum_size(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Sequence[str], active: Mapping[str, bool]) -> bool:
    return sum(1 for v in voters if active.get(v)) >= quorum_size(len(voters))
