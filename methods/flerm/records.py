"""Base records of FLeRM: per-tensor function-space LRs of the base model, and how they map onto a scaled one.

A record file (JSON, written by the `flerm_record` stage from base runs that logged `flerm/fslr/<tensor>`):

    {"format": "flerm-record/1", "lr": 0.001, "every": 50, "steps": [0, 50, ...],
     "seeds": [0, 1], "runs": ["runs/smoke/<id>", ...], "estimator": "kronecker", "output": "logits",
     "tensors": {"blocks.0.layers.0.weight": [F at steps[0], F at steps[1], ...], ...}}

Values are per unit LR and averaged element-wise over the seeds per record index (the paper's seed average).
`{lr}` in a record path template is replaced by `lr_tag(train.lr)`, so one template names the record of
every base LR of a sweep.

Name mapping (paper section 3): width and init scale map tensors 1:1 by name; depth x m maps base block k
onto target blocks mk..mk+m-1, each getting F_base / m (`depth_split`); tensors outside the blocks keep
F_base. Anything that does not map is a ConfigError naming the tensors.

`python -m methods.flerm.records RUN_DIR... --out FILE` writes a record from base runs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from claimbench.config import ConfigError

FORMAT = "flerm-record/1"
PREFIX = "flerm/fslr/"
BLOCK = re.compile(r"^(?P<pre>(?:.*\.)?blocks)\.(?P<k>\d+)\.(?P<rest>.+)$")


def lr_tag(lr: float) -> str:
    """The LR as it appears in record file names: 4 significant digits, e.g. 0.001, 0.0003162, 1e-05."""
    return f"{lr:.4g}"


def record_path(template: str, lr: float) -> str:
    return template.replace("{lr}", lr_tag(lr))


def read_record(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"flerm: base record not found: {path} (run the flerm_record stage on the base model, "
                          "or fix the `base` option)")
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"flerm: base record {path} is not valid JSON ({e.msg})") from None
    if rec.get("format") != FORMAT or not rec.get("tensors"):
        raise ConfigError(f"flerm: {path} is not a FLeRM base record (format {FORMAT} with per-tensor values)")
    return rec


def _split(name: str) -> tuple[str, int, str] | None:
    m = BLOCK.match(name)
    return (m["pre"], int(m["k"]), m["rest"]) if m else None


def _n_blocks(names: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        s = _split(n)
        if s:
            out[s[0]] = max(out.get(s[0], 0), s[1] + 1)
    return out


def map_record(base: dict[str, list[float]], target_names: list[str], depth_split: bool = True
               ) -> dict[str, list[float]]:
    """Base per-tensor series -> the target's tensors (width/init 1:1; depth blocks split), or ConfigError."""
    nb, nt = _n_blocks(base), _n_blocks(target_names)
    mult: dict[str, int] = {}
    bad_depth = []
    for pre, t in nt.items():
        b = nb.get(pre)
        if b and t % b == 0:
            mult[pre] = t // b
        elif b:
            bad_depth.append(f"{pre}: {t} target blocks over {b} base blocks (depth multiplier {t / b:.3g} is not "
                             "an integer)")
    if bad_depth:
        raise ConfigError("flerm: tensors do not map onto the base record: " + "; ".join(bad_depth))
    out, unmatched, used = {}, [], set()
    for name in target_names:
        s = _split(name)
        if s and s[0] in mult:
            src = f"{s[0]}.{s[1] // mult[s[0]]}.{s[2]}"
            div = mult[s[0]] if depth_split else 1
        else:
            src, div = name, 1
        if src not in base:
            unmatched.append(name)
            continue
        used.add(src)
        out[name] = [v / div for v in base[src]]
    unused = sorted(set(base) - used)
    if unmatched or unused:
        parts = []
        if unmatched:
            parts.append(f"target tensors without a base value: {_few(unmatched)}")
        if unused:
            parts.append(f"base tensors with no target: {_few(unused)}")
        raise ConfigError("flerm: tensor names do not map onto the base record (" + "; ".join(parts) + ")")
    return out


def _few(names: list[str], k: int = 6) -> str:
    return ", ".join(names[:k]) + (f" (+{len(names) - k} more)" if len(names) > k else "")


def record_from_runs(run_dirs: list[str | Path]) -> dict:
    """Average the base runs' logged per-tensor FSLRs over seeds, per record step."""
    per_step: dict[int, dict[str, list[float]]] = {}
    meta: dict = {}
    seeds, used = [], []
    for d in map(Path, run_dirs):
        cfg_file, metrics = d / "config.yaml", d / "metrics.jsonl"
        if not metrics.is_file():
            raise FileNotFoundError(f"{metrics}: base run has no metrics")
        import yaml

        cfg = yaml.safe_load(cfg_file.read_text())
        opts = next((m.get("options", {}) for m in cfg.get("methods", []) if m.get("name") == "flerm"), None)
        if opts is None:
            raise ValueError(f"{d}: not a run with method flerm (record mode)")
        run_meta = {"lr": cfg["train"]["lr"], "every": opts.get("every", 100),
                    "estimator": opts.get("estimator", "kronecker"), "output": opts.get("output", "auto"),
                    "workload": cfg["workload"], "model": cfg.get("model", {})}
        if meta and any(meta[k] != run_meta[k] for k in ("lr", "every", "estimator", "output", "workload")):
            raise ValueError(f"{d}: base runs of one record differ in {run_meta} vs {meta}")
        meta = meta or run_meta
        seeds.append(cfg.get("seed"))
        used.append(str(d))
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            if "flerm/at_step" not in row:
                continue
            vals = per_step.setdefault(int(row["flerm/at_step"]), {})
            for k, v in row.items():
                if k.startswith(PREFIX) and v is not None and math.isfinite(v):
                    vals.setdefault(k[len(PREFIX):], []).append(float(v))
    if not per_step:
        raise ValueError(f"no flerm/fslr values in {', '.join(used)} (were they run with method flerm?)")
    steps = sorted(per_step)
    names = sorted(per_step[steps[0]])
    steps = [s for s in steps if set(per_step[s]) >= set(names)]  # a diverged seed may stop early
    tensors = {n: [sum(per_step[s][n]) / len(per_step[s][n]) for s in steps] for n in names}
    return {"format": FORMAT, **meta, "steps": steps, "seeds": seeds, "runs": used, "tensors": tensors}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m methods.flerm.records", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="base run directories (method flerm in record mode)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from claimbench.io import atomic_write_json

    rec = record_from_runs(args.runs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.out), rec)
    print(f"{args.out}: {len(rec['tensors'])} tensors, {len(rec['steps'])} record steps, seeds {rec['seeds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
