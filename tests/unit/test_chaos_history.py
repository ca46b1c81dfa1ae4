"""The chaos checker: which values a read may legally return, per key."""

from blobstore.chaos.history import ABSENT, History


def write(history, key, gen, invoked, completed, outcome="ok"):
    w = history.begin_write(key, gen, 10, invoked)
    if completed is not None:
        history.end_write(w, outcome, completed)
    return w


def test_sequential_writes_only_the_last_is_legal():
    h = History()
    write(h, "k", 1, 0, 1)
    write(h, "k", 2, 2, 3)
    assert h.legal_generations("k", 4, 5) == {2}
    assert h.legal_generations("k", -1, -0.5) == {ABSENT}
    assert h.check_read("k", 4, 5, {2}, "")
    assert not h.check_read("k", 4, 5, {1}, "stale")
    assert h.wrong_reads


def test_overlapping_writes_and_reads():
    h = History()
    write(h, "k", 1, 0, 5)
    write(h, "k", 2, 1, 6)  # overlaps 1: either order
    assert h.legal_generations("k", 7, 8) == {1, 2}
    assert h.legal_generations("k", 2, 3) == {ABSENT, 1, 2}


def test_unknown_writes_may_apply_any_time_after_invocation():
    h = History()
    write(h, "k", 1, 0, 1, outcome="unknown")
    write(h, "k", 2, 2, 3)
    assert h.legal_generations("k", 10, 11) == {1, 2}
    legal, certain = h.final_expectation("k")
    assert legal == {1, 2} and not certain


def test_failed_writes_never_apply_and_deletes_are_absent():
    h = History()
    write(h, "k", 1, 0, 1)
    write(h, "k", 2, 2, 3, outcome="failed")
    write(h, "k", ABSENT, 4, 5)
    assert h.final_expectation("k") == ({ABSENT}, True)
