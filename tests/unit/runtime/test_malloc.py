"""runtime/malloc.py: glibc accepts both thresholds and the top pad (a rejected value
would silently keep the page-faulting defaults)."""

from __future__ import annotations

import platform

import pytest

from blobstore.runtime import malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_glibc_takes_the_thresholds_and_the_top_pad() -> None:
    assert malloc.keep_freed_memory()
