"""`claimbench law fit|select|study`: loss laws over LR schedules (methods/optlaws, docs/papers/optlaws.md).

fit     fit a law on some curves, predict others: {"law", "params", "predictions": {ID: {final_pred,
        final_actual, rel_error, r2, mae}}} (final = last logged step; r2/mae over the held-out curve)
select  rank a family grid of candidate schedules by predicted final loss, top k, divergence flags
study   the DAG stage: the three laws compared on a grid of runs -> JSON + markdown + figures
Curves come from `--curves DIR` (one step,lr,loss CSV per schedule, file name = id) or `--runs DIR`
(our run directories: metrics.jsonl step/lr/train_loss, exact LRs from config.yaml).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from claimbench.config import ConfigError

# read by claimbench.registry without importing this package (its __init__ imports torch)
COMMANDS = {"law": ("loss laws over LR schedules: fit, select, study (Opt-Laws, MPL, MTL)", "register")}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ids(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def check_out(path: str | Path, flag: str = "--out") -> None:
    """An output file must be writable where it is named: not a directory, not under a file (checked first)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p}: is a directory, not a file")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {p}: {parent} is a file, not a directory")
            break


def _load(args) -> dict:
    from methods.optlaws.curves import CurveError, read_csv_dir, read_runs

    check_out(args.out)
    try:
        if args.curves:
            return read_csv_dir(args.curves)
        d = Path(args.runs)
        if not d.is_dir():
            raise CurveError(f"{d}: not a directory of run directories")
        return read_runs(sorted(p for p in d.iterdir() if (p / "metrics.jsonl").is_file()))
    except CurveError as e:
        raise ConfigError(str(e)) from None


def _pick(curves: dict, ids: list[str], what: str) -> list:
    missing = [i for i in ids if i not in curves]
    if missing:
        raise ConfigError(f"--{what}: no curve named {', '.join(missing)} (have: {', '.join(sorted(curves))})")
    return [curves[i] for i in ids]


def _fit(args, curves: dict):
    import torch

    from methods.optlaws import FitError, get_law

    torch.set_num_threads(1)
    try:
        law_cls = get_law(args.law)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    fit = _pick(curves, _ids(args.fit), "fit")
    try:
        return law_cls.fit(fit, seed=args.seed, fit=args.procedure), None
    except FitError as e:
        return None, str(e)
    except ValueError as e:  # a procedure the law does not have: one line naming it
        raise ConfigError(f"--procedure: {e}") from None


def _write(path: str, obj: dict) -> None:
    from claimbench.io import atomic_write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), json.dumps(obj, indent=2, allow_nan=False) + "\n")


def cmd_fit(args) -> int:
    import numpy as np

    from methods.optlaws.base import scores

    curves = _load(args)
    pred_ids = _ids(args.predict)
    targets = _pick(curves, pred_ids, "predict")
    law, err = _fit(args, curves)
    if law is None:
        _write(args.out, {"law": args.law, "failed": True, "error": err, "fit": _ids(args.fit), "predictions": {}})
        print(f"claimbench: law fit failed: {err}", file=sys.stderr)
        return 1
    preds = {}
    for c in targets:  # a non-finite prediction is a failed prediction for that curve, never a number
        p = law.predict(c)
        preds[c.name] = scores(p, c.loss) if np.all(np.isfinite(p)) else {"failed": "non-finite prediction"}
    out = {**law.to_json(), "failed": False, "fit": _ids(args.fit), "predictions": preds}
    _write(args.out, out)
    for name, p in preds.items():
        if "failed" in p:
            print(f"{name:28s} failed: {p['failed']}")
            continue
        print(f"{name:28s} final pred {p['final_pred']:.4f} actual {p['final_actual']:.4f} "
              f"rel err {100 * p['rel_error']:.3f}%  R2 {p['r2']:.4f}  MAE {p['mae']:.4f}")
    return 1 if any("failed" in p for p in preds.values()) else 0


def cmd_select(args) -> int:
    from methods.optlaws.selection import ThresholdRule, candidate_grid, rank

    curves = _load(args)
    law, err = _fit(args, curves)
    if law is None:
        _write(args.out, {"law": args.law, "failed": True, "error": err, "ranking": []})
        print(f"claimbench: law fit failed: {err}", file=sys.stderr)
        return 1
    fit = _pick(curves, _ids(args.fit), "fit")
    total = args.steps or max(c.total for c in fit)
    peaks = _floats(args.peak_lrs) if args.peak_lrs else [max(c.peak_lr for c in fit)]
    warmups = [int(x) for x in _floats(args.warmups)] if args.warmups else [int(0.05 * total)]
    cands = candidate_grid(total, peaks, warmups, _floats(args.wsd_decay), _floats(args.cosine_min),
                           _floats(args.two_stage_ratio))
    rule = None
    if args.runs:  # divergence threshold from the observed runs (status diverged vs ok)
        obs = [c for c in curves.values() if c.meta.get("status") in ("ok", "diverged")]
        rule = ThresholdRule.fit([law.divergence_score(c) for c in obs], [c.meta["status"] == "diverged" for c in obs])
    out = rank(law, cands, rule, args.top_k)
    out["divergence"] = "not fitted (needs --runs with observed divergences)" if rule is None else "threshold rule"
    _write(args.out, out)
    for i, r in enumerate(out["ranking"][: args.top_k], 1):
        print(f"{i}. {r['schedule']}  predicted final loss {r['final_pred']:.4f}")
    flagged = [r["schedule"] for r in out["ranking"] if r["predicted_diverge"]]
    if flagged:
        print(f"predicted to diverge: {', '.join(flagged)}")
    return 0


def cmd_study(args) -> int:
    from methods.optlaws.analysis import run_analysis

    check_out(args.out)
    check_out(args.md, "--md")
    if Path(args.figures).exists() and not Path(args.figures).is_dir():
        raise ConfigError(f"--figures {args.figures}: is a file, not a directory")

    store = Path(args.store) if args.store else None
    if store is not None and not store.is_dir():
        raise ConfigError(f"--store {store}: not a directory")
    run_analysis(Path(args.grid), Path(args.runs_dir), Path(args.out), Path(args.md), Path(args.figures), args.seed,
                 store)
    print(f"wrote {args.out}, {args.md}")
    return 0


def _source(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--curves", help="directory of step,lr,loss CSVs (file name = schedule id)")
    g.add_argument("--runs", help="directory of run directories (metrics.jsonl, config.yaml, result.json)")
    p.add_argument("--law", required=True, help="optlaws (reconstructed) | multipower | annealing")
    p.add_argument("--fit", required=True, help="comma-separated ids of the fitting curves")
    p.add_argument("--seed", type=int, default=0, help="seeds the jittered starting points")
    p.add_argument("--procedure", help="the law's fitting procedure (default its first; multipower: converged | "
                   "release, the MPL authors' early-stopped fit)")
    p.add_argument("--out", required=True, help="output JSON")


def register(subparsers) -> None:
    law = subparsers.add_parser("law", help=COMMANDS["law"][0])
    sub = law.add_subparsers(dest="law_cmd", required=True)
    f = sub.add_parser("fit", help="fit a law on some curves and predict held-out ones")
    _source(f)
    f.add_argument("--predict", required=True, help="comma-separated ids of the curves to predict")
    f.set_defaults(fn=cmd_fit)
    s = sub.add_parser("select", help="rank candidate schedules by predicted final loss")
    _source(s)
    s.add_argument("--steps", type=int, default=0, help="candidate length (default: longest fitting curve)")
    s.add_argument("--peak-lrs", default="", help="comma-separated (default: the fitting curves' peak)")
    s.add_argument("--warmups", default="", help="comma-separated warmup steps (default: 5%% of steps)")
    s.add_argument("--wsd-decay", default="0.1,0.2,0.3", help="WSD decay fractions (linear and exponential)")
    s.add_argument("--cosine-min", default="0,0.1", help="cosine end LR ratios")
    s.add_argument("--two-stage-ratio", default="0.1,0.3", help="two-stage second LR ratios")
    s.add_argument("--top-k", type=int, default=3)
    s.set_defaults(fn=cmd_select)
    t = sub.add_parser("study", help="the three laws compared on a grid of runs (DAG stage)")
    t.add_argument("--grid", required=True,
                   help="config/papers/optlaws.<profile>.yaml (the cpu tier's includes the smoke grid, whose `study:` "
                        "block holds the settings)")
    t.add_argument("--runs-dir", required=True)
    t.add_argument("--store", help="evidence store (e.g. results/evidence/smoke) to read the runs --runs-dir lacks")
    t.add_argument("--out", required=True, help="study JSON")
    t.add_argument("--md", required=True, help="markdown report")
    t.add_argument("--figures", required=True, help="directory for predicted-vs-actual figures")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(fn=cmd_study)
