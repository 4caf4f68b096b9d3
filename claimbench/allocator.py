"""Keep freed host memory in the process, so a training step does not fault its buffers back in.

PyTorch's CPU tensors come straight from malloc. glibc serves a request above its mmap threshold (128 KiB
at start, raised only as far as the largest block freed so far) with a fresh mmap and gives it back on free,
and it trims the heap top once more than twice that lies free. A training step allocates and frees the same
large buffers (logits, their gradient, attention and MLP activations, and under LRM one effective weight per
matrix) every step, so every step pays page faults to map and zero them again: ~3,400 to 5,500 per step at
the smoke GPT size on this machine, and the faulted-in buffers start cold. With the threshold fixed at its
maximum and trimming off, the second step reuses the first step's memory and no page is faulted in again.
The numbers a run computes do not change (only where its buffers live); the resident memory stays at the
run's peak instead of shrinking between steps.

mallopt is glibc's documented interface for this (the same settings as the GLIBC_TUNABLES
glibc.malloc.mmap_threshold / trim_threshold, which only work when set before the process starts, and a
warm-started job is a fork). Other C libraries (macOS, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit (4 * 1024 * 1024 * sizeof(long))
TRIM_NEVER = 2**31 - 1  # mallopt takes an int: the largest value, i.e. no trimming in practice

@cache
def retain_freed_memory() -> bool:
    """Fix glibc's mmap threshold at its maximum and stop heap trimming, once per process; True when
    both settings took (glibc), False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_NEVER))
