"""The meta replica's own wire error: NotLeader, a redirect to the Raft leader.

``core/errors.py`` holds the errors every role shares; this one only the meta service and
its client speak. On the wire it is HTTP 421 (Misdirected Request) with

    {"error": {"code": "NotLeader", "message": "...", "leader": "host:port" | null,
               "leader_id": "meta-2" | null}}

``leader`` is the address of the leader this replica knows of, or null while it knows
none (an election is running, or this replica is cut off). ``rpc/meta_client.py`` follows
``leader`` (and moves on to the next address when it is null); it matches the code by the
string ``NOT_LEADER_CODE``, which it defines too (roles never import each other's code), so
the two constants must stay equal (``tests/unit/meta/test_raft_group.py`` checks).

``NoQuorum`` (503, a kind of Unavailable) says more than "no leader": this replica has been
running for a while and has heard from fewer than a quorum of voters lately (on a leader:
within one election timeout; elsewhere: within two, which spans a pre-vote round), so the
group is degraded, not merely electing. The client stops waiting for a leader at once (it
still asks the other addresses of its round: one of them may be on the majority side).

Rule: a replica answers NotLeader only for requests that it did not act on: the command was
not proposed, the read was not served. A client may therefore resend the same request (the
same envelope for a command) to the leader.
"""

from __future__ import annotations

from blobstore.core.errors import BlobstoreError, Unavailable

NOT_LEADER_CODE = "NotLeader"
NOT_LEADER_STATUS = 421
NO_QUORUM_CODE = "NoQuorum"


class NotLeader(BlobstoreError):
    """This meta replica is not the Raft leader; ask the leader instead."""

    code = NOT_LEADER_CODE
    http_status = NOT_LEADER_STATUS

    def __init__(self, message: str = "", leader_id: str | None = None,
                 leader_address: str | None = None) -> None:
        super().__init__(message or (f"not the leader; the leader is {leader_id}"
                                     if leader_id else "not the leader; no leader known"))
        self.leader_id = leader_id
        self.leader_address = leader_address

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message,
                          "leader": self.leader_address, "leader_id": self.leader_id}}


class NoQuorum(Unavailable):
    """This meta replica cannot reach a quorum of the group: writes fail until it can."""

    code = NO_QUORUM_CODE
