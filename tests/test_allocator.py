"""The allocator setting that keeps a training step from faulting its buffers back in (claimbench/allocator.py)."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# a fresh process per arm: mallopt is process-wide and sticky. 64 MiB as 4 buffers of 16 MiB (a smoke GPT's logits
# and their gradient are that size), freed and allocated again the way consecutive steps do
_PROBE = textwrap.dedent("""
    import resource, sys
    import torch
    from claimbench.allocator import retain_freed_memory
    if sys.argv[1] == "on":
        assert retain_freed_memory()
    def step():
        bufs = [torch.ones(4 * 1024 * 1024) for _ in range(4)]
        return float(sum(b[-1] for b in bufs))
    step()
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(arm: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, arm], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_freed_buffers_are_reused_without_page_faults():
    """glibc's defaults map the 16 MiB buffers afresh step after step (4,096 faults apiece; 315k-491k over 30
    steps here, where 10 steps gave 37k-159k: glibc's adaptive threshold keeps some, so few steps were flaky);
    with the setting the steps after the first two reuse the heap (0-16k faults in all here)."""
    steps, pages = 30, 4 * 4096
    off, on = _faults("off"), _faults("on")
    assert off > steps * pages // 4, off
    assert on < steps * pages // 10, on


def test_idempotent():
    from claimbench.allocator import retain_freed_memory

    first = retain_freed_memory()
    assert first is True and retain_freed_memory() is first
