"""Speed of fitting each loss law (target: < 10 s on 3 curves of 200 points each, this 2-core CPU).

Curves: cosine, constant and two-stage schedules of 2000 steps (warmup 100, peak 3e-3) logged every 10
steps, loss from an annealing-law shape plus seeded noise (0.2%). Prints wall and CPU seconds per law;
CPU time is the stable number on a shared machine.

    .venv/bin/python scripts/speed/bench_laws.py
"""

from __future__ import annotations

import time

import numpy as np

from baselines.schedules import family
from methods.optlaws import LAWS
from methods.optlaws.curves import Curve


def synthetic(name: str, total: int = 2000, every: int = 10, seed: int = 0, **kw) -> Curve:
    f = family(name, total, 100, **kw)
    lrs = np.array([3e-3 * f(i) for i in range(total)])
    steps = np.arange(every, total + 1, every)
    s1 = np.cumsum(lrs)[steps - 1]
    drop = np.concatenate([[0.0], np.clip(lrs[:-1] - lrs[1:], 0, None)])
    m = np.zeros(total)
    for i in range(1, total):
        m[i] = 0.999 * m[i - 1] + drop[i]
    s2 = np.cumsum(m)[steps - 1]
    loss = 3.0 + 0.8 * s1 ** -0.5 - 0.3 * s2
    loss *= 1 + 0.002 * np.random.default_rng(seed).standard_normal(len(loss))
    return Curve(name, lrs, steps, loss)


def main() -> None:
    curves = [synthetic("cosine"), synthetic("constant", seed=1), synthetic("two_stage", seed=2, second_ratio=0.3)]
    print(f"{len(curves)} curves x {len(curves[0].steps)} points")
    for name in ("optlaws", "multipower", "annealing"):
        t0, c0 = time.perf_counter(), time.process_time()
        law = LAWS[name].fit(curves, seed=0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ok = "OK" if wall < 10 else "SLOW"
        print(f"{law.label:40s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  (target < 10 s: {ok})")


if __name__ == "__main__":
    main()
