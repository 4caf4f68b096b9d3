"""Overhead of FLeRM on a scaled run: the 41-pass EMA warm-up at step 0 plus periodic re-estimation.

In one process, alternating A/B/C (median over rounds): A = the scaled model with plain Adam, B = FLeRM applied
once (the paper's main results), C = FLeRM re-applied every `--every` steps (the ablation). The fixed cost of B
(41 warm-up passes) is measured on short runs; one estimator pass costs (B - A) / 41 (C - B, the measured cost of
the periodic passes, is reported too but is the difference of two noisy numbers). Extrapolated to a run of
`--target-steps` (2,000 by default): once = (B - A) / (A * target/steps); periodic adds target/100 passes.

    python scripts/speed/bench_flerm.py [--workload gpt|mlp] [--steps 60] [--rounds 3] [--out bench.json]
    python scripts/speed/bench_flerm.py --size gpu --data-dir DIR --set train.device=cuda \
        --set train.dtype=bfloat16 --set train.compile=true     # GPT-2 124M's shape (12L x d768, 12 x 1024)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from claimbench.config import load_config, to_yaml
from claimbench.testing import micro_data_dir
from claimbench.train import Trainer, prepare
from methods.flerm.records import record_from_runs

MODELS = {
    "gpt": ({"workload": "gpt", "size": "smoke", "model.n_embd": 256, "model.n_head": 16, "model.n_layer": 2,
             "model.block_size": 32, "model.norm_position": "post", "model.norm_affine": False,
             "model.qk_norm": True, "model.tie_weights": False, "train.batch_size": 16},
            {"model.n_embd": 32, "model.n_head": 2}),
    # the same scaled model at GPT-2 small's shape (base width 96 = 12 heads x 8)
    "gpt-gpu": ({"workload": "gpt", "size": "gpu", "model.n_embd": 768, "model.n_head": 12, "model.n_layer": 12,
                 "model.block_size": 1024, "model.norm_position": "post", "model.norm_affine": False,
                 "model.qk_norm": True, "model.tie_weights": False, "train.batch_size": 12},
                {"model.n_embd": 96, "model.n_head": 12}),
    "mlp": ({"workload": "mlp", "size": "smoke", "data.dir": "data/fashion-mnist", "data.augment": False,
             "model.width": 256, "model.n_blocks": 4, "train.batch_size": 32}, {"model.width": 32}),
}


def overrides(workload: str, steps: int, lr: float, methods: list, base: bool = False, size: str = "smoke",
              data_dir: str = "", extra: tuple[str, ...] = ()) -> list[str]:
    scaled, base_sets = MODELS[f"{workload}-gpu" if size == "gpu" else workload]
    default_dir = str(micro_data_dir()) if workload == "gpt" and not data_dir else "data/fashion-mnist"
    sets = {"data.dir": data_dir or default_dir, **scaled,
            "train.steps": steps, "train.schedule": "constant", "train.warmup_steps": 0, "train.weight_decay": 0.0,
            "train.grad_clip": 0.0, "train.beta2": 0.999, "train.lr": lr, "eval.every": 0, "eval.batches": 1,
            "ckpt.every": 0, "log.every": 10, "methods": json.dumps(methods)}
    if base:
        sets.update(base_sets)
    return [f"{k}={v}" for k, v in sets.items()] + list(extra)


def timed_fit(sets: list[str], out: Path) -> float:
    cfg = load_config(None, sets, base={})
    trainer = Trainer(prepare(cfg, out))
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(cfg))  # the record reader takes the LR and options from it
    t0 = time.perf_counter()
    trainer.t_start = t0
    trainer.fit(out / "metrics.jsonl", out / "ckpt.pt")
    return time.perf_counter() - t0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", choices=["gpt", "mlp"], default="gpt")
    p.add_argument("--size", choices=["smoke", "gpu"], default="smoke",
                   help="gpu: GPT at GPT-2 small's shape, batch 12 x 1024 (gpt only)")
    p.add_argument("--data-dir", default="", help="data.dir (default: the 512-token Shakespeare test set)")
    p.add_argument("--set", action="append", default=[], help="more overrides for every arm, e.g. train.device=cuda")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--every", type=int, default=20, help="re-apply period of arm C (the paper: 100)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--target-steps", type=int, default=2000)
    p.add_argument("--paper-every", type=int, default=100, help="period used for the extrapolation")
    p.add_argument("--out")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.size == "gpu" and args.workload != "gpt":
        p.error("--size gpu: only for --workload gpt")
    kw = {"size": args.size, "data_dir": args.data_dir, "extra": tuple(args.set)}
    lr = 2e-3
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        timed_fit(overrides(args.workload, 2, lr, [{"name": "flerm", "every": 10}], base=True, **kw), tmp / "base")
        (tmp / "rec_lr0.002.json").write_text(json.dumps(record_from_runs([tmp / "base"])))
        tmpl = str(tmp / "rec_lr{lr}.json")
        arms = {"A_plain": [], "B_once": [{"name": "flerm", "base": tmpl}],
                "C_every": [{"name": "flerm", "base": tmpl, "reapply": True, "every": args.every}]}
        times: dict[str, list[float]] = {a: [] for a in arms}
        for r in range(args.rounds):
            for arm, methods in arms.items():
                times[arm].append(timed_fit(overrides(args.workload, args.steps, lr, methods, **kw),
                                           tmp / f"{arm}-{r}"))
    med = {a: statistics.median(v) for a, v in times.items()}
    step = med["A_plain"] / args.steps
    warm = med["B_once"] - med["A_plain"]  # 41 passes + the record bookkeeping
    per_pass = warm / 41
    per_pass_c = (med["C_every"] - med["B_once"]) / max(1, (args.steps - 1) // args.every)
    train = step * args.target_steps
    scaled = MODELS[f"{args.workload}-gpu" if args.size == "gpu" else args.workload][0]
    model = (f"{scaled['model.n_layer']}L x d{scaled['model.n_embd']}, batch {scaled['train.batch_size']} x "
             f"{scaled['model.block_size']}" if args.workload == "gpt" else
             f"{scaled['model.n_blocks']} blocks x width {scaled['model.width']}, batch {scaled['train.batch_size']}")
    res = {"workload": args.workload, "size": args.size, "model": model, "sets": args.set,
           "steps": args.steps, "rounds": args.rounds, "median_s": med, "all_s": times,
           "step_s": step, "warmup_s": warm, "pass_s": per_pass, "pass_s_from_C": per_pass_c,
           "overhead_once_pct": 100 * warm / train,
           "overhead_periodic_pct": 100 * (warm + per_pass * (args.target_steps // args.paper_every)) / train,
           "target_steps": args.target_steps, "paper_every": args.paper_every}
    print(json.dumps({k: v for k, v in res.items() if k != "all_s"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
