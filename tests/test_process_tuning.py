"""glibc's mmap threshold, pinned at the agent's start: each case in a fresh interpreter, because the
setting (and glibc's own adjustment of it) is process-wide and cannot be undone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Frees a 2.5 MiB block (glibc's adjustment, when on, raises its threshold to that size), then asks for
# a 1 MiB one (a dict's table at ~20k entries) and reports whether it was mmapped (and so will be given
# back to the system when freed) or carved from the heap.
_PROBE = textwrap.dedent(
    """
    import ctypes, json, sys
    from qss_exporter.process_tuning import malloc_usage, pin_mmap_threshold

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    pinned = pin_mmap_threshold() if sys.argv[1] == "pin" else None
    libc.free(libc.malloc(5 * 2**19))
    before = malloc_usage()["mmapped"]
    block = libc.malloc(2**20)
    mmapped = malloc_usage()["mmapped"] - before >= 2**20
    libc.free(block)
    print(json.dumps({"pinned": pinned, "mmapped": mmapped}))
    """
)


def _probe(mode: str, **env: str) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], env={**environment, **env}, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


needs_glibc = pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc's allocator only")


@needs_glibc
def test_without_the_pin_a_freed_big_block_moves_later_tables_onto_the_heap() -> None:
    assert _probe("leave") == {"pinned": None, "mmapped": False}  # what the soak's step came from


@needs_glibc
def test_the_pinned_threshold_keeps_big_tables_mmapped_so_that_freeing_them_gives_memory_back() -> None:
    assert _probe("pin") == {"pinned": True, "mmapped": True}


@needs_glibc
def test_an_operator_s_own_malloc_setting_is_left_alone() -> None:
    assert _probe("pin", MALLOC_MMAP_THRESHOLD_="4194304") == {"pinned": False, "mmapped": False}
    assert _probe("pin", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=4194304") == {"pinned": False, "mmapped": False}
