"""A linearizability checker for key-value histories (Wing & Gong search, Porcupine-style).

A history is a list of ``Operation``: a client called ``put(key, value)`` or ``get(key)`` at
logical time ``invoke`` and saw the result at ``complete`` (a get's result is the value it
read, ``None`` for an absent key). An operation whose outcome the client never learned
(timed out, connection lost) has ``complete = None``: it may have taken effect at any time
after its invocation, or never. A get that never completed constrains nothing; the checker
drops it.

The history is linearizable iff there is a total order of the operations that (1) respects
real time: if ``a.complete < b.invoke`` then ``a`` comes before ``b``; (2) is legal for a
register per key: every get returns the value of the latest put before it (or the initial
``None``). Keys are independent (linearizability is local, Herlihy & Wing 1990), so each key
is checked alone, which keeps the search small.

The search (Wing & Gong 1993, with Lowe's memoisation as in Porcupine): walk the call/return
events in time order; at a call, try to linearize that operation now (its effect must be
legal in the current state); at a return whose operation has not been linearized, backtrack.
A (set of linearized operations, state) pair that was already explored is not explored
again. An operation with an unknown completion gets a return event after every other event:
linearizing it "at the end" is the same as it never having happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

INFINITY = float("inf")


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation on one key."""

    client: int
    kind: Literal["put", "get"]
    key: str
    value: str | None  # put: the value written; get: the value read (None = absent)
    invoke: float
    complete: float | None  # None: unknown outcome


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict: ``ok``, and for a failure the key and its operations."""

    ok: bool
    key: str | None = None
    operations: tuple[Operation, ...] = ()

    def explain(self) -> str:
        if self.ok:
            return "linearizable"
        lines = [f"key {self.key!r} is not linearizable; its operations:"]
        for op in sorted(self.operations, key=lambda o: o.invoke):
            end = "?" if op.complete is None else f"{op.complete:g}"
            lines.append(f"  client {op.client} {op.kind}({op.value!r}) [{op.invoke:g}, {end}]")
        return "\n".join(lines)


class _Node:
    """A call or return event in the doubly linked event list."""

    __slots__ = ("op_id", "is_call", "match", "prev", "next")

    def __init__(self, op_id: int, is_call: bool) -> None:
        self.op_id = op_id
        self.is_call = is_call
        self.match: _Node | None = None
        self.prev: _Node | None = None
        self.next: _Node | None = None


def _build_events(ops: list[Operation]) -> _Node:
    events: list[tuple[float, int, int, _Node]] = []
    for i, op in enumerate(ops):
        call, ret = _Node(i, True), _Node(i, False)
        call.match = ret
        end = INFINITY if op.complete is None else op.complete
        assert end >= op.invoke, f"operation completes before it is invoked: {op}"
        events.append((op.invoke, 0, i, call))
        events.append((end, 1, i, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Node(-1, False)
    prev = head
    for _, _, _, node in events:
        prev.next = node
        node.prev = prev
        prev = node
    return head


def _lift(call: _Node) -> None:
    assert call.prev is not None and call.match is not None and call.match.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret = call.match
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Node) -> None:
    assert call.prev is not None and call.match is not None and call.match.prev is not None
    ret = call.match
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def _step(state: str | None, op: Operation) -> tuple[bool, str | None]:
    if op.kind == "put":
        return True, op.value
    return op.value == state, state


def check_register(ops: list[Operation], initial: str | None = None) -> bool:
    """Is this single-key history linearizable for a register starting at ``initial``?"""
    ops = [op for op in ops if not (op.kind == "get" and op.complete is None)]
    if not ops:
        return True
    head = _build_events(ops)
    linearized = 0
    seen: set[tuple[int, str | None]] = set()
    stack: list[tuple[_Node, str | None]] = []
    state = initial
    entry = head.next
    while head.next is not None:
        assert entry is not None
        if entry.is_call:
            ok, new_state = _step(state, ops[entry.op_id])
            if ok:
                candidate = linearized | (1 << entry.op_id)
                if (candidate, new_state) not in seen:
                    seen.add((candidate, new_state))
                    stack.append((entry, state))
                    state, linearized = new_state, candidate
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                return False
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op_id)
            _unlift(entry)
            entry = entry.next
    return True


def check_history(ops: list[Operation]) -> CheckResult:
    """Check every key's sub-history; the first failing key is reported."""
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    for key in sorted(by_key):
        if not check_register(by_key[key]):
            return CheckResult(ok=False, key=key, operations=tuple(by_key[key]))
    return CheckResult(ok=True)
