"""Keep freed memory in the process, so that a training loop does not fault its pages in again.

A training step allocates its activations and gradients afresh and frees them all at the end.
With glibc's default settings, large blocks are mapped from the kernel on each allocation and
unmapped when freed, and a freed top of the heap is trimmed, so every step touches new pages
and pays their page faults (docs/performance.md, "Runtime"). The steps repeat the same
allocations, so memory kept from one step is reused by the next and the peak stays the same.

``retain_freed_memory()`` switches glibc's malloc to that: no ``mmap`` for large blocks, no trim.
It changes the whole process, so npgpt calls it only when training starts (a model's first
training forward with targets, the ``Trainer``, the benchmarks); ``NPGPT_RETAIN_FREED_MEMORY=0``
in the environment turns it off. On a C library other than glibc it does nothing and returns
False.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied = False


def retain_freed_memory() -> bool:
    """Keep freed blocks for reuse instead of returning them to the kernel (glibc only).
    Returns whether the setting is in effect. Calling it again does nothing more."""
    global _applied
    if _applied:
        return True
    if os.environ.get("NPGPT_RETAIN_FREED_MEMORY", "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):       # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
