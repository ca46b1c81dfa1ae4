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
