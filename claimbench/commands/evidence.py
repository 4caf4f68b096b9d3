"""`claimbench evidence` (copy finished runs into the evidence store) and `claimbench verify` (retrain a
sample of the stored runs and compare their numbers with the stored ones)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from claimbench.config import ConfigError

# result.json / metrics.jsonl keys that measure the machine rather than the run: never compared
TIMING = ("wall_s", "cpu_s", "tokens_per_s", "samples_per_s", "mfu", "step_s", "time", "hardware", "git_sha",
          "versions", "peak_flops", "peak_source", "world_size")


def cmd_evidence(args) -> int:
    from claimbench.evidence import archive

    kept = archive(args.run_dirs, args.store)
    print(f"{args.store}: {len(kept)} runs archived")
    return 0


def _numbers(obj, prefix: str = "") -> dict[str, float]:
    """Flat numeric leaves of a result or a metrics row, timing keys left out."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if any(t in k for t in TIMING):
                continue
            out.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(obj, bool):
        out[prefix[:-1]] = float(obj)
    elif isinstance(obj, (int, float)):
        out[prefix[:-1]] = float(obj)
    elif isinstance(obj, str) and prefix.endswith("status."):
        out[prefix[:-1]] = float(("ok", "diverged", "failed").index(obj)) if obj in ("ok", "diverged", "failed") \
            else math.nan
    return out


def compare(stored: Path, fresh: Path) -> dict:
    """Per metric, the largest absolute difference between a stored run and its retrained copy."""
    from claimbench.io import read_jsonl

    diffs: dict[str, float] = {}

    def add(a: dict, b: dict, where: str) -> None:
        for k in sorted(set(a) | set(b)):
            x, y = a.get(k), b.get(k)
            if x is None or y is None:
                d = math.inf
            elif math.isnan(x) and math.isnan(y) or x == y:
                d = 0.0
            else:
                d = abs(x - y)
            diffs[f"{where}{k}"] = max(diffs.get(f"{where}{k}", 0.0), d)

    add(_numbers(json.loads((stored / "result.json").read_text())),
        _numbers(json.loads((fresh / "result.json").read_text())), "result:")
    rows_a, rows_b = read_jsonl(stored / "metrics.jsonl"), read_jsonl(fresh / "metrics.jsonl")
    if len(rows_a) != len(rows_b):
        diffs["metrics:rows"] = math.inf
    for ra, rb in zip(rows_a, rows_b, strict=False):
        add(_numbers(ra), _numbers(rb), "metrics:")
    return diffs


def upstream_inputs(run_dir: Path, store: Path | None = None) -> dict[str, list[list[str]] | None]:
    """The files a stored run reads that another run or stage makes and this checkout lacks (each method's
    `reads`: a LoRA base checkpoint, a FLeRM base record), each with the commands that make it from `store` (the
    method's `remake`; None: the store cannot give it back). An unreadable config gives {} (the retrain then says
    what is wrong)."""
    from claimbench import registry
    from claimbench.config import load_config
    from claimbench.plugin import validate_options

    out: dict[str, list[list[str]] | None] = {}
    try:
        cfg = load_config(run_dir / "config.yaml", [])
        for i, ref in enumerate(cfg.methods):
            cls = registry.get("method", ref.name)
            opts = validate_options(cls.Options, ref.options, f"methods[{i}] ({ref.name})")
            for p in cls.reads(opts, cfg):
                if not Path(p).is_file():
                    out[p] = cls.remake(p, opts, cfg, store) if store is not None else None
    except (ConfigError, OSError, ValueError):
        return {}
    return out


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    """Run a command: None, or the last line of what went wrong."""
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]


def _train(config: Path, out: Path, cwd: Path | None = None) -> str | None:
    """Retrain a stored config into `out`: None, or the last line of what went wrong."""
    err = _run([sys.executable, "-m", "claimbench", "train", str(config.resolve()), "--out", str(out.resolve())], cwd)
    return err or (None if (out / "result.json").is_file() else "no result.json written")


def _remake(needs: dict[str, list[list[str]]], root: Path) -> str | None:
    """Make a run's inputs inside `root`, a scratch tree with the checkout's data linked in, where the run's
    relative paths resolve: None, or what could not be made."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "data").exists():
        (root / "data").symlink_to(Path.cwd().resolve() / "data")
    for path, commands in needs.items():
        for cmd in commands if not (root / path).is_file() else []:
            err = _run(cmd, root)
            if err:
                return f"{path}: {err}"
        if not (root / path).is_file():
            return f"{path} was not made"
    return None


def cmd_verify(args) -> int:
    from claimbench.commands.tables import evidence_dir, load_profile
    from claimbench.io import hardware, hardware_class, same_hardware

    cfg = load_profile(args.profile, args.configfile)
    store = Path(args.evidence_dir) if args.evidence_dir else evidence_dir(cfg)
    stored = sorted(p.parent for p in store.glob("*/result.json"))
    usable = [d for d in stored if _status(d) in ("ok", "diverged")]
    names = {d.name: d for d in stored}
    bad = [r for r in args.runs or [] if r not in names]
    if bad:
        raise ConfigError(f"--runs: {bad[0]} is not in the evidence store {store}")
    needs = {d.name: upstream_inputs(d, store) for d in ([names[r] for r in args.runs] if args.runs else usable)}
    lost = {n for n, need in needs.items() if any(c is None for c in need.values())}  # the store cannot remake
    note = ""
    if args.runs:
        chosen = [names[r] for r in args.runs]
    else:
        able = [d for d in usable if d.name not in lost]
        if not able:
            raise ConfigError(f"{store}: no finished runs to verify")
        chosen = sorted(random.Random(args.seed).sample(able, min(args.sample, len(able))))
        if lost:
            note = (f"drawn from the {len(able)} the store can retrain: {len(lost)} others read a file it cannot "
                    "give back; `make reproduce` retrains them with their inputs")
    mine = hardware()
    here = hardware_class(mine)
    work = (Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="claimbench-verify-"))).resolve()
    print(f"verifying {len(chosen)} of {len(usable)} stored runs from {store} in {work} (this machine: {here})"
          + (f"\n{note}" if note else ""))
    worst_same = 0.0
    redo: dict[str, Path] = {}
    for d in chosen:
        res = json.loads((d / "result.json").read_text())
        hw = res.get("hardware") if isinstance(res.get("hardware"), dict) else None
        theirs = hardware_class(hw) if hw else "unrecorded"
        same = hw is not None and same_hardware(hw, mine)
        need, root, after = needs[d.name], None, ""
        if d.name in lost:
            path = next(p for p, c in need.items() if c is None)
            print(f"  {d.name}: not retrained: it reads {path}, which another run or stage makes and the store "
                  "cannot give back (`make reproduce` retrains it with its inputs)")
            continue
        if need:  # made from the store first, in a scratch tree where the run's relative paths resolve
            root, after = work / "inputs", f" (after remaking {', '.join(sorted(need))} from the store)"
            err = _remake(need, root)
            if err:
                print(f"  {d.name}: could not remake its input {err}")
                worst_same = math.inf if same else worst_same
                continue
        out = work / d.name
        err = _train(d / "config.yaml", out, root)
        if err:
            print(f"  {d.name}: could not retrain ({err})")
            worst_same = math.inf if same else worst_same
            continue
        redo[d.name] = out
        diffs = compare(d, out)
        worst = max(diffs.values(), default=0.0)
        if same:
            worst_same = max(worst_same, worst)
            word = "bit-identical" if worst == 0 else f"DIFFERS on the same hardware class (max |diff| {worst:.3g})"
            if worst and "bf16_units" not in hw:
                word += "; its bfloat16 matmul units were not recorded: a bfloat16 run (Muon) differs across them"
        else:
            word = f"other hardware ({theirs}): max |diff| {worst:.3g}"
        print(f"  {d.name}: {word}{after}")
        for k, v in sorted(diffs.items(), key=lambda kv: -kv[1])[: 0 if worst == 0 else args.top]:
            if v > 0:
                print(f"      {k}: {v:.3g}")
    changed = _verdict_changes(args, cfg, store, redo)
    print("verdicts: " + ("unchanged" if not changed else "CHANGED: " + "; ".join(changed)))
    return 0 if worst_same == 0 and not changed else 1


def _status(d: Path) -> str | None:
    try:
        return json.loads((d / "result.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _verdict_changes(args, cfg: dict, store: Path, redo: dict[str, Path]) -> list[str]:
    """Claims whose verdict moves when the retrained runs replace the stored ones."""
    if not redo:
        return []
    from claimbench.claims import CLAIMS_DIR, load_all
    from claimbench.tables import build_studies

    claims = [c for c in load_all(CLAIMS_DIR) if set(redo) & {rid for specs in c.arms(cfg["profile"]).values()
                                                            for rid in specs}]
    if not claims:
        return []
    fresh_dir = next(iter(redo.values())).parent
    with tempfile.TemporaryDirectory() as empty:
        before = build_studies(claims, cfg["profile"], empty, cfg["results_dir"], store)
    after = build_studies(claims, cfg["profile"], fresh_dir, cfg["results_dir"], store)
    return [f"{a['claim']} {a['verdict']} -> {b['verdict']}" for a, b in zip(before, after, strict=True)
            if a["verdict"] != b["verdict"]]


def register(sub) -> None:
    e = sub.add_parser("evidence", help="copy finished runs' small files into the evidence store (the DAG calls it)")
    e.add_argument("run_dirs", nargs="*", help="run directories")
    e.add_argument("--store", required=True, help="the evidence store, e.g. results/evidence/smoke")
    e.set_defaults(fn=cmd_evidence)
    v = sub.add_parser("verify", help="retrain runs drawn from the evidence store and compare their numbers")
    v.add_argument("--profile", default="smoke")
    v.add_argument("--configfile", help="a profile config file instead of config/<profile>.yaml")
    v.add_argument("--evidence-dir", help="the store (default: the profile's)")
    v.add_argument("--sample", type=int, default=3, help="how many runs to draw (default 3)")
    v.add_argument("--seed", type=int, default=0, help="seed of the draw")
    v.add_argument("--runs", nargs="+", help="these run ids instead of a draw")
    v.add_argument("--work", help="where to retrain (default: a new temporary directory)")
    v.add_argument("--top", type=int, default=5, help="metrics listed per run that differs")
    v.set_defaults(fn=cmd_verify)
