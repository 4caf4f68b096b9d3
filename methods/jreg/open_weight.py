"""The open-weight models' jump profiles side by side (claim jreg.c1_open_weight).

`python -m methods.jreg.open_weight --profiles results/jreg/open_weight_*.json --out results/jreg/open_weight`
writes `open_weight.json` (per model: J, its window interval, d_L, whether d_L is the largest of d_2..d_L; and
the share of models whose window interval of J lies at or above JUMP_CLEAR, with its exact binomial interval over
the models and n, so the claim's interval test can decide, or not, on two models) and `open_weight.md`. Every
profile is one `claimbench jump pkg:NAME --json` record.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy import stats as sps

from claimbench.config import ConfigError
from claimbench.io import atomic_write_text
from methods.jreg.metric import JUMP_CLEAR, jump_strength

LEVEL = 0.95  # the share's interval: exact (Clopper-Pearson), two-sided


def summarize(records: dict[str, dict]) -> dict:
    """{models: {name: numbers}, n_models, n_jump, frac_jump with its exact interval}; a model 'has the jump' when
    its J window interval lies at or above JUMP_CLEAR (C1's band), 'no jump' when it lies below."""
    models = {}
    for name, r in sorted(records.items()):
        d, w = r["distances"], r["jump_windows"]
        mid = d[1:-1]
        models[name] = {"source": r.get("original") or r["source_model"], "package": r.get("package"),
                        "package_version": r.get("package_version"), "quantisation": r.get("quantisation"),
                        "n_layers": r["n_layers"], "tokens": r.get("tokens"), "lm_loss": r.get("lm_loss"),
                        "jump": r["jump"], "jump_form": r["jump_form"], "jump_k": r["jump_k"],
                        "jump_windows_mean": w["mean"], "jump_ci_lo": w["ci_lo"], "jump_ci_hi": w["ci_hi"],
                        "forms": r["forms"], "d_1": d[0], "d_mid_mean": sum(mid) / len(mid) if mid else None,
                        "d_mid_max": max(mid) if mid else None, "d_prev": d[-2] if len(d) > 1 else None,
                        "d_last": d[-1], "d_last_hf_post_norm": r.get("d_last_hf_normed"),
                        # the pitfall: J as HF's output_hidden_states tuple, whose last entry is norm(h_L)
                        "jump_hf_post_norm": (jump_strength(d[:-1] + [r["d_last_hf_normed"]], r["jump_form"],
                                                            r["jump_k"]) if r.get("d_last_hf_normed") is not None
                                              else None),
                        "final_is_max": bool(r.get("final_is_max")),
                        "has_jump": w["ci_lo"] >= JUMP_CLEAR, "no_jump": w["ci_hi"] < JUMP_CLEAR}
    n = len(models)
    n_jump = sum(m["has_jump"] for m in models.values())
    lo, hi = share_interval(n_jump, n)
    return {"models": models, "n_models": n, "n_jump": n_jump, "n_no_jump": sum(m["no_jump"] for m in models.values()),
            "frac_jump": n_jump / n if n else float("nan"), "frac_jump_ci_lo": lo, "frac_jump_ci_hi": hi,
            "level": LEVEL, "interval": "exact binomial (Clopper-Pearson) over the models",
            "test": f"has_jump: the t-interval of J over the text windows lies at or above {JUMP_CLEAR} (C1's band, "
                    "per model)"}


def share_interval(k: int, n: int) -> tuple[float, float]:
    """Exact interval of a share k/n: with few models it spans most of [0, 1], which is the point."""
    if n == 0:
        return float("nan"), float("nan")
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=LEVEL, method="exact")
    return float(ci.low), float(ci.high)


def markdown(summary: dict) -> str:
    rows = ["# JREG: the jump in open-weight models (claim jreg.c1_open_weight)", "",
            f"{summary['n_jump']} of {summary['n_models']} models show the jump ({summary['test']}); share "
            f"{summary['frac_jump']:.2f}, exact {summary['level']:.0%} interval [{summary['frac_jump_ci_lo']:.2f}, "
            f"{summary['frac_jump_ci_hi']:.2f}] (n={summary['n_models']}).", "",
            "| model | package | weights | layers | tokens | LM loss | d_1 | mean d_2..d_{L-1} | max d_2..d_{L-1} "
            "| d_{L-1} | d_L | d_L from HF's post-norm state | J pooled [95% t-interval of per-window J] | J diff "
            "| J share | d_L largest of d_2..d_L | jump |",
            "|---" * 17 + "|"]
    for name, m in summary["models"].items():
        f = m["forms"]
        rows.append(f"| {name}: {m['source']} | {m['package']}=={m['package_version']} | {m['quantisation']} "
                    f"| {m['n_layers']} | {m['tokens']} | {m['lm_loss']:.3f} | {m['d_1']:.3f} | {m['d_mid_mean']:.3f} "
                    f"| {m['d_mid_max']:.3f} | {m['d_prev']:.3f} | {m['d_last']:.3f} | {m['d_last_hf_post_norm']:.3f} "
                    f"| {m['jump']:.3f} [{m['jump_ci_lo']:.3f}, {m['jump_ci_hi']:.3f}] | {f['diff']:.3f} "
                    f"| {f['share']:.3f} | {'yes' if m['final_is_max'] else 'no'} "
                    f"| {'yes' if m['has_jump'] else 'no' if m['no_jump'] else 'unclear'} |")
    rows += ["", "J: the default (reconstructed) `ratio` form, k=1, pre final norm. Every layer's distance: "
                 "`open_weight_<model>.md` beside this file.", "",
             "Had we taken Hugging Face's `hidden_states[-1]` (= final_norm(h_L)) as h_L, J would read: "
             + "; ".join(f"{name} {m['jump_hf_post_norm']:.3f}" for name, m in summary["models"].items()
                         if m["jump_hf_post_norm"] is not None) + " (the final norm's gains rotate the vector).", ""]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", nargs="+", required=True, help="open_weight_<model>.json records")
    ap.add_argument("--out", required=True, help="output prefix: writes <out>.json and <out>.md")
    args = ap.parse_args(argv)
    records = {}
    for p in map(Path, args.profiles):
        if not p.is_file():
            raise ConfigError(f"--profiles: file not found: {p}")
        records[p.stem.removeprefix("open_weight_")] = json.loads(p.read_text())
    summary = summarize(records)
    atomic_write_text(f"{args.out}.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(f"{args.out}.md", markdown(summary))
    print(f"{args.out}.json: {summary['n_jump']} of {summary['n_models']} models show the jump")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
