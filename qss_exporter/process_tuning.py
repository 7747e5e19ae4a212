"""Process-wide runtime settings of the long-running agent, made once at its start (cli.py) and by the
benchmarks that stand in for it (bench/memory.py): Python's young GC generation and glibc malloc's
mmap threshold. Neither changes what the agent computes; both change what it costs to run for weeks.
"""

from __future__ import annotations

import ctypes
import gc
import os

__all__ = ["GC_YOUNG_THRESHOLD", "MMAP_THRESHOLD", "malloc_usage", "pin_mmap_threshold", "tune_process"]

# The garbage collector's young generation, in container allocations (CPython's default is 700). A
# request waiting for Redis keeps its objects alive across young collections: they are promoted, and
# the full collections, which walk all the state the agent holds, come more often. Measured with
# bench/replicas.py's setup, interleaved in one run: with Redis, the collector's CPU per event 64 ->
# 11 us and the agent's 520 -> 404 - 451 us; with local state 15 -> ~10 us, within noise overall. The
# garbage cycles held the longer are a few MB at most.
GC_YOUNG_THRESHOLD = 10_000

# glibc serves a block of at least this size by mmap, and returns it to the system when it is freed.
# Left alone, glibc raises its threshold to the size of each such block freed (up to 32 MiB): from
# then on the big tables of the agent's dicts (2.5 MiB each for enrichment at 10k participants) come
# from the heap, and a table reallocated as its dict churns leaves the old one as free heap that is
# never given back. That was the 10k soak's 2.5 MiB RSS step (bench/memory.py's samples: malloc's
# free-but-kept bytes +2.4 MiB, in use flat). Setting the threshold (its default value) turns the
# adjustment off; the cost is an mmap and munmap per table resize past 128 KiB, a few a minute.
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold; False where there is no glibc (musl, macOS: nothing to fix there) or
    the operator chose their own (MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_usage() -> dict[str, int]:
    """glibc malloc's own view (mallinfo2, glibc >= 2.33), in bytes: in use, free but kept in its heap, and
    mmapped; empty without it. A step in RSS with no step in use is memory the allocator kept
    (bench/memory.py's soak samples)."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return {}
    mallinfo2 = libc.mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {"in_use": info.uordblks, "free_kept": info.fordblks, "mmapped": info.hblkhd}


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (the only one that adjusts its threshold)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def tune_process() -> None:
    """Both settings, before the agent's event loop starts."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
    pin_mmap_threshold()
