"""The per-key register linearizability checker, on histories known to be (not) linearizable."""

from __future__ import annotations

import random

from blobstore.testing.linearizability import Operation, check_history, check_register


def put(client: int, value: str, start: float, end: float | None, key: str = "k") -> Operation:
    return Operation(client=client, kind="put", key=key, value=value, invoke=start, complete=end)


def get(client: int, value: str | None, start: float, end: float | None,
        key: str = "k") -> Operation:
    return Operation(client=client, kind="get", key=key, value=value, invoke=start, complete=end)


def test_sequential_history_is_linearizable():
    assert check_register([put(1, "a", 0, 1), get(2, "a", 2, 3), put(1, "b", 4, 5),
                           get(2, "b", 6, 7)])


def test_a_read_of_the_initial_value_after_a_completed_write_is_not():
    assert not check_register([put(1, "a", 0, 1), get(2, None, 2, 3)])


def test_concurrent_operations_may_take_effect_in_either_order():
    assert check_register([put(1, "a", 0, 10), get(2, None, 1, 2), get(3, "a", 3, 4)])
    assert check_register([put(1, "a", 0, 10), put(2, "b", 1, 9), get(3, "a", 11, 12)])
    assert check_register([put(1, "a", 0, 10), put(2, "b", 1, 9), get(3, "b", 11, 12)])


def test_a_stale_read_after_a_newer_one_is_not_linearizable():
    history = [put(1, "a", 0, 1), put(1, "b", 2, 10), get(2, "b", 3, 4), get(3, "a", 5, 6)]
    assert not check_register(history)


def test_an_unknown_put_may_take_effect_late_or_never():
    assert check_register([put(1, "a", 0, None), get(2, None, 1, 2), get(2, "a", 30, 31)])
    assert check_register([put(1, "a", 0, None), get(2, None, 30, 31)])


def test_an_unknown_put_cannot_take_effect_before_it_was_invoked():
    assert not check_register([get(2, "a", 0, 1), put(1, "a", 2, None)])


def test_an_unknown_put_takes_effect_at_most_once():
    history = [put(1, "a", 0, None), get(2, "a", 1, 2), put(3, "b", 3, 4), get(2, "a", 5, 6)]
    assert not check_register(history)


def test_an_unanswered_get_constrains_nothing():
    assert check_register([put(1, "a", 0, 1), get(2, "zzz", 2, None)])


def test_keys_are_checked_independently():
    ok = [put(1, "a", 0, 1, key="x"), put(1, "b", 0, 1, key="y"), get(2, "a", 2, 3, key="x")]
    assert check_history(ok).ok
    bad = ok + [get(2, "a", 4, 5, key="y")]
    result = check_history(bad)
    assert not result.ok and result.key == "y"
    assert "not linearizable" in result.explain()


def test_the_search_agrees_with_brute_force_on_random_small_histories():
    rng = random.Random(42)
    for _ in range(300):
        history = _random_history(rng)
        assert check_register(history) == _brute_force(history), history


def _random_history(rng: random.Random) -> list[Operation]:
    ops = []
    for i in range(rng.randrange(1, 6)):
        start = rng.randrange(20)
        end = None if rng.random() < 0.2 else start + 1 + rng.randrange(6)
        if rng.random() < 0.5:
            ops.append(put(i, f"v{i}", start, end))
        else:
            ops.append(get(i, rng.choice([None, "v0", "v1", "v2"]), start,
                           end if end is not None else start + 1))
    return ops


def _brute_force(ops: list[Operation]) -> bool:
    """Try every order (and every subset of unknown puts) directly."""
    import itertools

    unknown = [op for op in ops if op.complete is None]
    known = [op for op in ops if op.complete is not None]
    for r in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, r):
            candidates = known + list(chosen)
            for order in itertools.permutations(candidates):
                if _legal(order):
                    return True
    return False


def _legal(order: tuple[Operation, ...]) -> bool:
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.complete is not None and b.complete < a.invoke:
                return False  # b finished before a started, yet comes after it
    state = None
    for op in order:
        if op.kind == "put":
            state = op.value
        elif op.value != state:
            return False
    return True
