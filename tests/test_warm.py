"""The warm-start server: a forked train job gives the numbers a plain job gives, a killed job kills its
child, no server means the plain command, and a DAG with `warm: true` trains through it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from claimbench.testing import REPO

TIMING = ("wall_s", "cpu_s", "tokens_per_s", "mfu", "hardware", "peak_flops")


def _args(data_dir: Path, out: Path, steps: int = 4) -> list[str]:
    return ["train", str(REPO / "benchmarks/configs/gpt.yaml"), "--set", "size=micro", "--set",
            f"train.steps={steps}", "--set", f"data.dir={data_dir}", "--set", "eval.batches=1", "--set", "log.every=1",
            "--out", str(out)]


def _numbers(run: Path) -> tuple[dict, list[dict]]:
    res = {k: v for k, v in json.loads((run / "result.json").read_text()).items() if k not in TIMING}
    rows = [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]
    return res, rows


def _server(sock: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "claimbench.warm", "serve", str(sock)], cwd=REPO)
    for _ in range(600):
        if sock.exists():
            return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the warm server did not come up")


def test_forked_job_gives_the_plain_jobs_numbers_and_dies_with_its_client(tmp_path, data_dir):
    sock = tmp_path / "w.sock"
    server = _server(sock)
    try:
        client = [sys.executable, "-m", "claimbench.warm", str(sock)]
        warm = subprocess.run([*client, *_args(data_dir, tmp_path / "warm")], capture_output=True, text=True,
                              timeout=120)
        assert warm.returncode == 0, warm.stderr
        plain = subprocess.run([sys.executable, "-m", "claimbench", *_args(data_dir, tmp_path / "plain")],
                               capture_output=True, text=True, timeout=120)
        assert plain.returncode == 0, plain.stderr
        assert _numbers(tmp_path / "warm") == _numbers(tmp_path / "plain")
        assert "step 4/4" in warm.stdout + warm.stderr  # the child wrote to the job's own stdout/stderr
        # bad input is still one line and exit 2, from the child
        bad = subprocess.run([*client, "train", str(REPO / "benchmarks/configs/gpt.yaml"), "--set", "train.stepz=1",
                              "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "unknown key 'train.stepz'" in bad.stderr
        # a killed job: its child goes too (kill-and-resume as for a plain job)
        job = subprocess.Popen([*client, *_args(data_dir, tmp_path / "long", steps=100000)])
        for _ in range(300):
            if psutil.Process(server.pid).children():
                break
            time.sleep(0.05)
        (child,) = psutil.Process(server.pid).children()
        job.send_signal(signal.SIGKILL)
        job.wait()
        child.wait(timeout=10)
        assert not psutil.Process(server.pid).children()
    finally:
        server.terminate()
        server.wait(10)
    assert not sock.exists()


def test_no_server_runs_the_plain_command(tmp_path, data_dir):
    r = subprocess.run([sys.executable, "-m", "claimbench.warm", str(tmp_path / "none.sock"),
                        *_args(data_dir, tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "ok"


def test_a_warm_dag_trains_through_the_server(tmp_path):
    from test_snakemake import MICRO, _snakemake

    (tmp_path / "micro.yaml").write_text(yaml.safe_dump({**MICRO, "warm": True}))
    r = _snakemake(tmp_path, "results/runs.csv", "-p")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "claimbench.warm .snakemake/claimbench-warm.sock train" in r.stdout + r.stderr
    log = (tmp_path / ".snakemake" / "claimbench-warm.log")
    assert log.is_file() and not (tmp_path / ".snakemake" / "claimbench-warm.sock").exists()  # stopped at the end
    for d in (tmp_path / "runs" / "micro").iterdir():
        res = json.loads((d / "result.json").read_text())
        assert res["status"] == "ok" and res["cpu_s"] < 2.5, (d.name, res["cpu_s"])  # forked: no start-up paid
