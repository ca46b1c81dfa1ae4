"""Multipart uploads in the state machine: parts hold references; completion moves them."""

from __future__ import annotations

import hashlib

import lmdb
import pytest

from blobstore.core.records import Part, Segment, SegmentRef, Upload
from blobstore.meta import invariants, multipart, schema
from blobstore.meta.commands import (
    AbortUpload,
    CommandEnvelope,
    CompleteUpload,
    CreateBucket,
    CreateUpload,
    PutPart,
)
from blobstore.meta.state_machine import StateMachine

MIB = 1024 * 1024


def sid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def segment(name: str, length: int) -> Segment:
    return Segment(id=sid(name), length=length, data_shards=2, parity_shards=1,
                   shard_xxh3=["0" * 16] * 3, placement=["s1", "s2", "s3"])


class Machine:
    def __init__(self, path) -> None:
        self.env = lmdb.open(str(path), map_size=64 * MIB, max_dbs=schema.MAX_DBS)
        self.state = StateMachine(self.env)
        self.index = 0

    def run(self, command):
        self.index += 1
        outcome = self.state.apply(self.index, CommandEnvelope("t", self.index, command))
        value = outcome.unwrap()
        self.check()
        return value

    def fails(self, command) -> str:
        self.index += 1
        outcome = self.state.apply(self.index, CommandEnvelope("t", self.index, command))
        assert not outcome.ok, outcome
        self.check()
        return outcome.error_code

    def refcount(self, name: str) -> int:
        return self.state.lookup_segments([sid(name)])[sid(name)].refcount

    def check(self) -> None:
        assert invariants.check(self.env, self.state.dbs) == []


def part(number: int, names: list[str], length: int) -> tuple[Part, list[Segment]]:
    refs = [SegmentRef(sid(n), i * length, length) for i, n in enumerate(names)]
    etag = hashlib.md5(f"{number}{names}".encode()).hexdigest()
    return (Part(number=number, etag=etag, size=length * len(names), created_ns=1, segments=refs),
            [segment(n, length) for n in names])


@pytest.fixture()
def machine(tmp_path):
    m = Machine(tmp_path)
    m.run(CreateBucket(name="b", created_ns=1))
    m.run(CreateUpload(upload=Upload(bucket="b", key="k", upload_id="u1", created_ns=1)))
    yield m
    m.env.close()


def test_complete_stitches_parts_and_moves_references(machine):
    p1, s1 = part(1, ["a", "b"], 3 * MIB)
    p2, s2 = part(2, ["c"], 100)
    p3, s3 = part(3, ["d"], 5)
    for p, s in ((p1, s1), (p2, s2), (p3, s3)):
        machine.run(PutPart(upload_id="u1", part=p, new_segments=s))
    assert machine.refcount("a") == 1 and machine.refcount("d") == 1
    result = machine.run(CompleteUpload(upload_id="u1", parts=[(1, p1.etag), (2, p2.etag)],
                                        version_id="v", created_ns=2))
    expected = hashlib.md5(bytes.fromhex(p1.etag) + bytes.fromhex(p2.etag)).hexdigest() + "-2"
    assert result["etag"] == expected and result["size"] == 6 * MIB + 100
    manifest = machine.state.get_manifest("b", "k")
    assert [(r.id, r.offset) for r in manifest.version.segments] == [
        (sid("a"), 0), (sid("b"), 3 * MIB), (sid("c"), 6 * MIB)]
    assert machine.refcount("a") == 1 and machine.refcount("c") == 1
    assert machine.refcount("d") == 0  # the unlisted part released its reference
    assert machine.fails(AbortUpload(upload_id="u1")) == "NoSuchUpload"


def test_completion_rules(machine):
    small, s_small = part(1, ["x"], 100)
    last, s_last = part(2, ["y"], 100)
    machine.run(PutPart(upload_id="u1", part=small, new_segments=s_small))
    machine.run(PutPart(upload_id="u1", part=last, new_segments=s_last))
    assert machine.fails(CompleteUpload(upload_id="u1", parts=[(2, last.etag), (1, small.etag)],
                                        version_id="v", created_ns=2)) == "InvalidPartOrder"
    assert machine.fails(CompleteUpload(upload_id="u1", parts=[(1, "0" * 32)],
                                        version_id="v", created_ns=2)) == "InvalidPart"
    assert machine.fails(CompleteUpload(upload_id="u1", parts=[(1, small.etag), (2, last.etag)],
                                        version_id="v", created_ns=2)) == "EntityTooSmall"
    assert machine.fails(CompleteUpload(upload_id="nope", parts=[(1, small.etag)],
                                        version_id="v", created_ns=2)) == "NoSuchUpload"


def test_replacing_a_part_and_aborting_release_references(machine):
    first, s_first = part(1, ["old"], 10)
    machine.run(PutPart(upload_id="u1", part=first, new_segments=s_first))
    second, s_second = part(1, ["new"], 10)
    machine.run(PutPart(upload_id="u1", part=second, new_segments=s_second))
    assert machine.refcount("old") == 0 and machine.refcount("new") == 1
    listing = multipart.read_uploads(machine.state, "b", "", "", "", 10)
    assert [u.upload_id for u in listing.uploads] == ["u1"]
    machine.run(AbortUpload(upload_id="u1"))
    assert machine.refcount("new") == 0
    assert multipart.read_uploads(machine.state, "b", "", "", "", 10).uploads == []
