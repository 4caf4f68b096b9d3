"""loglikelihood throughput of the lm-eval model `claimbench` vs a plain batched forward over the same requests.

The issue's target: at least 0.8x the tokens/s of the plain forward on a `smoke` GPT on the CPU. Requests are
the offline tasks' own (cloze passages and QuaRTz choices, as lm-eval builds them); the plain forward takes the
same token rows, right-padded per batch, and does nothing but the forward pass: `plain` in request order,
`plain_sorted` longest first (the padding our model class also saves). All run in one process, alternating,
best of `--repeats` (timings on this machine vary by up to 40% between repeats).

    .venv/bin/python scripts/speed/bench_lm_eval.py [--requests 512] [--batch-size 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from lm_eval.api.instance import Instance

from benchmarks.lm_eval_tasks.prepare import data_dir, prepare
from claimbench.config import load_config
from claimbench.lm_eval_model import ClaimbenchLM
from claimbench.testing import REPO, micro_data_dir
from claimbench.train import execute
from claimbench.train import prepare as prepare_run


def smoke_checkpoint(out: Path) -> Path:
    """A smoke-size GPT trained for 2 steps: throughput does not depend on the weights."""
    data = REPO / "data" / "shakespeare"
    data = data if (data / "meta.json").is_file() else micro_data_dir()
    cfg = load_config(REPO / "benchmarks/configs/gpt.yaml", [
        "size=smoke", "train.steps=2", "train.warmup_steps=0", f"data.dir={data}", "eval.every=0", "ckpt.every=0",
        "log.every=1", "eval.batches=1"])
    assert execute(prepare_run(cfg, out)) == 0
    return out / "ckpt.pt"


def requests(n: int) -> list[Instance]:
    d = data_dir()
    if not (d / "cb_shakespeare_cloze.jsonl").is_file():
        prepare(d, ["cb_shakespeare_cloze"])
    cloze = [json.loads(x) for x in (d / "cb_shakespeare_cloze.jsonl").read_text().splitlines()]
    pairs = [(c["context"], " " + c["target"]) for c in cloze]
    quartz = d / "cb_quartz.jsonl"
    if quartz.is_file():
        for q in map(json.loads, quartz.read_text().splitlines()[: n // 2]):
            pairs += [(f"Question: {q['question']}\nAnswer:", " " + c) for c in q["choices"]]
    pairs = pairs[:n]
    return [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]


@torch.no_grad()
def plain_forward(lm: ClaimbenchLM, rows: list[list[int]], batch_size: int) -> None:
    for b in range(0, len(rows), batch_size):
        chunk = rows[b:b + batch_size]
        x = torch.full((len(chunk), max(map(len, chunk))), lm.eot_token_id, dtype=torch.long)
        for i, r in enumerate(chunk):
            x[i, :len(r)] = torch.tensor(r)
        lm.model(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        lm = ClaimbenchLM(str(smoke_checkpoint(Path(tmp) / "run")), device="cpu", batch_size=args.batch_size)
    reqs = requests(args.requests)
    rows = []
    for r in reqs:
        ctx, cont = lm._encode_pair(*r.args)
        rows.append((ctx + cont)[-(lm.max_length + 1):][:-1])
    tokens = sum(map(len, rows))
    by_len = sorted(rows, key=len, reverse=True)
    best = {"claimbench": float("inf"), "plain": float("inf"), "plain_sorted": float("inf")}
    for _ in range(args.repeats):
        t = time.perf_counter()
        lm.loglikelihood(reqs, disable_tqdm=True)
        best["claimbench"] = min(best["claimbench"], time.perf_counter() - t)
        t = time.perf_counter()
        plain_forward(lm, rows, args.batch_size)
        best["plain"] = min(best["plain"], time.perf_counter() - t)
        t = time.perf_counter()
        plain_forward(lm, by_len, args.batch_size)
        best["plain_sorted"] = min(best["plain_sorted"], time.perf_counter() - t)
    rate = {k: tokens / v for k, v in best.items()}
    print(f"smoke GPT (block {lm.max_length}), {len(reqs)} loglikelihood requests, {tokens} input tokens, "
          f"batch {args.batch_size}, {args.threads} threads, best of {args.repeats}")
    for k, v in rate.items():
        print(f"  {k:<13} {v:10.0f} tokens/s  ({best[k]:.3f} s)")
    for k in ("plain", "plain_sorted"):
        print(f"  ratio claimbench/{k} = {rate['claimbench'] / rate[k]:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
