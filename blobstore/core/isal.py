"""zfec's Reed-Solomon parity, computed by Intel ISA-L's SIMD kernels when libisal is present.

zfec computes parity one GF(2^8) multiply-add pass per data shard, with table lookups: about
855 MB/s per core here, 71 ms of gateway CPU for every 64 MiB written, the largest item in the
PUT profile after MD5. ISA-L's ``ec_encode_data`` does the same arithmetic with AVX2/AVX-512
(GFNI where the CPU has it) at several GB/s.

The code stays zfec's: both work in GF(2^8) modulo x^8+x^4+x^3+x^2+1, and the coefficients
given to ISA-L are read out of zfec itself (the parity of unit vectors), so the parity bytes
are identical and every shard on disk decodes with zfec. ``tests/unit/core/test_isal.py``
checks that identity on random segments for several policies.

ISA-L is called through ctypes (which releases the GIL for the call), so nothing is compiled
here; without libisal (``libisal2`` on Debian/Ubuntu) ``available()`` is false and ``ec``
uses zfec for everything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Sequence

import zfec

Buffer = bytes | bytearray | memoryview


@functools.cache
def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("isal")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
        library.ec_init_tables.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                           ctypes.c_char_p]
        library.ec_init_tables.restype = None
        library.ec_encode_data.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                           ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
        library.ec_encode_data.restype = None
    except (OSError, AttributeError):
        return None
    return library


def available() -> bool:
    return _library() is not None


@functools.lru_cache(maxsize=16)
def zfec_parity_matrix(data_shards: int, total_shards: int) -> bytes:
    """zfec's parity coefficients, row-major: ``[parity row][data shard]``.

    zfec is linear, so the parity of the unit vector e_i is column i of its matrix.
    """
    encoder = zfec.Encoder(data_shards, total_shards)
    parity_numbers = list(range(data_shards, total_shards))
    columns = []
    for i in range(data_shards):
        unit = [b"\x01" if j == i else b"\x00" for j in range(data_shards)]
        columns.append([block[0] for block in encoder.encode(unit, parity_numbers)])
    return bytes(columns[i][row] for row in range(total_shards - data_shards)
                 for i in range(data_shards))


@functools.lru_cache(maxsize=16)
def _tables(data_shards: int, total_shards: int) -> ctypes.Array[ctypes.c_char]:
    library = _library()
    assert library is not None
    parity_rows = total_shards - data_shards
    tables = ctypes.create_string_buffer(32 * data_shards * parity_rows)
    library.ec_init_tables(data_shards, parity_rows,
                           zfec_parity_matrix(data_shards, total_shards), tables)
    return tables


class _PyBuffer(ctypes.Structure):
    # CPython's Py_buffer; ``obj`` as a plain pointer so that ctypes leaves its refcount to
    # PyBuffer_Release.
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int),
                ("ndim", ctypes.c_int), ("format", ctypes.c_char_p),
                ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_PyObject_GetBuffer = ctypes.pythonapi.PyObject_GetBuffer
_PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_PyObject_GetBuffer.restype = ctypes.c_int
_PyBuffer_Release = ctypes.pythonapi.PyBuffer_Release
_PyBuffer_Release.argtypes = [ctypes.POINTER(_PyBuffer)]
_PyBuffer_Release.restype = None
_PyBUF_SIMPLE = 0  # C-contiguous bytes, read-only accepted; raises BufferError otherwise


def _address(buffer: Buffer) -> int:
    """The address of a contiguous buffer's first byte (bytes, bytearray or memoryview).

    The caller keeps ``buffer`` referenced, and unresized, while the address is in use.
    """
    view = _PyBuffer()
    _PyObject_GetBuffer(buffer, ctypes.byref(view), _PyBUF_SIMPLE)
    try:
        return view.buf or 0
    finally:
        _PyBuffer_Release(ctypes.byref(view))


def encode_parity(data_shards: int, total_shards: int, blocks: Sequence[Buffer],
                  shard_size: int) -> list[bytearray]:
    """The ``total - data`` parity shards of the ``data_shards`` blocks of ``shard_size``
    bytes each, exactly as zfec computes them."""
    library = _library()
    if library is None:
        raise RuntimeError("ISA-L is not available")
    if len(blocks) != data_shards or any(len(b) != shard_size for b in blocks):
        raise ValueError(f"need {data_shards} blocks of {shard_size} bytes")
    parity_rows = total_shards - data_shards
    parity = [bytearray(shard_size) for _ in range(parity_rows)]
    sources = (ctypes.c_void_p * data_shards)(*(_address(b) for b in blocks))
    targets = (ctypes.c_void_p * parity_rows)(*(_address(p) for p in parity))
    library.ec_encode_data(shard_size, data_shards, parity_rows,
                           _tables(data_shards, total_shards), sources, targets)
    return parity
