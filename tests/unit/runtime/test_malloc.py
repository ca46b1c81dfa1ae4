"""runtime/malloc.py: glibc accepts both thresholds (a rejected value would silently keep
the page-faulting defaults)."""

from __future__ import annotations

import platform

import pytest

from blobstore.runtime import malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_glibc_takes_both_thresholds() -> None:
    assert malloc.keep_freed_memory()
