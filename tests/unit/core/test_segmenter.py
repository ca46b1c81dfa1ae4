from hypothesis import given
from hypothesis import strategies as st

from blobstore.core.segmenter import Segmenter


@given(chunks=st.lists(st.binary(max_size=300), max_size=30), size=st.integers(1, 200))
def test_segments_reassemble_the_stream(chunks, size):
    cutter = Segmenter(size)
    out = []
    for chunk in chunks:
        out += cutter.feed(chunk)
    out += cutter.finish()
    body = b"".join(chunks)
    assert b"".join(s for _, s in out) == body
    assert all(len(s) == size for _, s in out[:-1])
    offsets = [o for o, _ in out]
    assert offsets == [i * size for i in range(len(out))]


@given(chunks=st.lists(st.binary(max_size=300), max_size=30), size=st.integers(1, 200),
       announced_delta=st.integers(-50, 50))
def test_an_announced_length_right_or_wrong_changes_nothing(chunks, size, announced_delta):
    body = b"".join(chunks)
    cutter = Segmenter(size, expected_length=max(0, len(body) + announced_delta))
    out = []
    for chunk in chunks:
        out += cutter.feed(memoryview(chunk))
    out += cutter.finish()
    assert b"".join(s for _, s in out) == body
    assert all(len(s) == size for _, s in out[:-1])
    assert [o for o, _ in out] == [i * size for i in range(len(out))]
