#!/usr/bin/env bash
# One GPU check, every result under one directory: environment report, the speed suite on CUDA (bf16 +
# torch.compile: GPT-2 124M's shape with nanoGPT's 50,304-token vocabulary at micro-batch 12 x 1024, Trainer vs a
# plain PyTorch loop alternated in one process, tokens/s, ratio and MFU against the datasheet bf16 dense peak; ViT-S;
# the method overheads lrm, adamw2, jreg and flerm at that size) and a short GPU grid through Snakemake with
# `--resources gpu=1` (DAG, slot pinning, run files, wall time).
#
#   scripts/speed/gpu_check.sh [--dry-run] [--print] [--stages env,install,data,speed,grid,methods,flerm] [--pack DIR] [OUT]
#   make gpu-check                      # the same, OUT=build/gpu-check
#
# OUT: argument, else $OUT, else build/gpu-check. Written there: env.json, speed.{json,md} (throughput),
# methods.{json,md} (method overheads and FLeRM), grid.json (+ grid_dag.txt, grid_snakemake.log), summary.json
# (each stage's exit code and wall time, the headline numbers), gpu_check.log, and gpu-check.tgz holding all of it
# plus the grid's run files (checkpoints left out). Scratch (synthetic data, runs, the overlay venv) goes under
# $WORK (default OUT/work). --pack DIR copies the few files worth reading (summary.json, gpu_check.log, *.md,
# gpu-check.tgz: at most 8 files) into DIR, for a runner that brings back only a handful of top-level files.
#
# The GPU machine has PyTorch and no network: the other dependencies come from wheels made here by
# scripts/speed/gpu_wheels.sh (build/wheels, gitignored) and go into an overlay venv on top of the interpreter
# that holds torch (`pip install --no-index --find-links ... --no-deps`; torch is never touched), then the project
# with `pip install --no-deps -e .`.
#
# --dry-run (or DRY=1): every size shrunk (micro models, a few steps, CPU, float32, no compile, --no-hooks for the
# grid since the no-GPU check would stop it) so the whole script runs on a CPU machine in a couple of minutes;
# the install stage is skipped when the packages already import (INSTALL=1 forces it). The numbers of a dry run
# mean nothing. Environment: PY (interpreter holding torch; default python3), WHEELS (default build/wheels),
# BUDGET_S (the whole script's deadline, default 500 s: every stage gets at most what is left), WORK, VENV.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
REPO=$(pwd)

DRY=${DRY:-0}
PRINT=${PRINT:-0}  # --print: list each stage's command (one line, shell-quoted) and run nothing
STAGES="env,install,data,speed,grid,methods,flerm"
PACK=""
OUT_ARG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --print) PRINT=1 ;;
    --stages) STAGES=$2; shift ;;
    --stages=*) STAGES=${1#*=} ;;
    --pack) PACK=$2; shift ;;
    --pack=*) PACK=${1#*=} ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    -*) echo "gpu_check: error: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) [ -z "$OUT_ARG" ] || { echo "gpu_check: error: one output directory, got '$OUT_ARG' and '$1'" >&2; exit 2; }
       OUT_ARG=$1 ;;
  esac
  shift
done
for s in ${STAGES//,/ }; do
  case "$s" in env|install|data|speed|grid|methods|flerm) ;;
    *) echo "gpu_check: error: unknown stage '$s' (env, install, data, speed, grid, methods, flerm)" >&2; exit 2 ;;
  esac
done
OUT=${OUT_ARG:-${OUT:-build/gpu-check}}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$OUT/work}
mkdir -p "$WORK" "$OUT/.stages" && WORK=$(cd "$WORK" && pwd)
rm -f "$OUT"/.stages/*
PY=${PY:-python3}
WHEELS=${WHEELS:-$REPO/build/wheels}
VENV=${VENV:-$WORK/venv}
BUDGET_S=${BUDGET_S:-500}
T0=$(date +%s)
LOG=$OUT/gpu_check.log
: > "$LOG"
[ -n "$PACK" ] && mkdir -p "$PACK" && LOG2=$PACK/gpu_check.log || LOG2=/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

say() { echo "[gpu_check $(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG" "$LOG2"; }
want() { [[ ",$STAGES," == *",$1,"* ]]; }
secs_since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }

# stage NAME LIMIT_S CMD...: runs CMD (output to the log) under the smaller of LIMIT_S and the time left;
# records its exit code and wall time in $OUT/.stages/NAME.json; never stops the script
stage() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET_S - ($(date +%s) - T0) ))
  [ "$limit" -le "$left" ] || limit=$left
  if [ "$limit" -lt 10 ]; then
    say "$name: skipped (${left}s of BUDGET_S=${BUDGET_S} left)"
    echo "{\"stage\": \"$name\", \"rc\": null, \"skipped\": \"no time left\"}" > "$OUT/.stages/$name.json"
    return 1
  fi
  if [ "$PRINT" = 1 ]; then
    echo "$name: $(printf '%q ' "$@")"
    return 0
  fi
  say "$name: start (limit ${limit}s)"
  local t; t=$(date +%s%N)
  timeout --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$LOG" "$LOG2"
  local rc=${PIPESTATUS[0]}
  local wall; wall=$(secs_since "$t")
  echo "{\"stage\": \"$name\", \"rc\": $rc, \"wall_s\": $wall, \"limit_s\": $limit}" > "$OUT/.stages/$name.json"
  say "$name: rc=$rc wall=${wall}s$([ "$rc" = 124 ] && echo ' (TIMED OUT)')"
  return "$rc"
}

if [ "$DRY" = 1 ]; then
  DEVICE=cpu DTYPE=float32 COMPILE=() VOCAB=512 TOKENS=200000 IMAGES=2000
  SPEED_CASES=(gpt:micro:4 vit:micro:16) SPEED_STEPS=3 SPEED_REPEATS=1
  METHODS_ARGS=(--methods lrm adamw2 jreg --methods-size micro --methods-batch 4 --methods-block 2 --methods-rounds 1)
  FLERM_ARGS=(--flerm-size smoke --flerm-steps 3 --flerm-rounds 1)
  GRID_SIZE=micro GRID_STEPS=20 GRID_BATCH=4 GRID_HOOKS=(--no-hooks)
else
  DEVICE=cuda DTYPE=bfloat16 COMPILE=(--compile) VOCAB=50304 TOKENS=20000000 IMAGES=50000
  SPEED_CASES=(gpt:gpu:12 vit:gpu:512) SPEED_STEPS=${SPEED_STEPS:-50} SPEED_REPEATS=${SPEED_REPEATS:-2}
  METHODS_ARGS=(--methods lrm adamw2 jreg --methods-size gpu --methods-batch 12 --methods-block 10 --methods-rounds 3)
  FLERM_ARGS=(--flerm-size gpu --flerm-steps 30 --flerm-rounds 1)
  GRID_SIZE=gpu GRID_STEPS=${GRID_STEPS:-200} GRID_BATCH=12 GRID_HOOKS=()
fi
say "OUT=$OUT WORK=$WORK DRY=$DRY stages=$STAGES device=$DEVICE dtype=$DTYPE budget=${BUDGET_S}s git=$(git rev-parse --short HEAD 2>/dev/null)"

# ---------------------------------------------------------------- env: the report, before anything is installed
if want env; then
  stage env 60 "$PY" scripts/speed/gpu_env.py --out "$OUT/env.json" $([ "$DRY" = 1 ] || echo --require-cuda) \
    || { [ "$DRY" = 1 ] || { say "no CUDA device: stopping (use --dry-run on a CPU machine)"; exit 2; }; }
fi

# ---------------------------------------------------------------- install: overlay venv from the travelling wheels
install() {
  set -e
  [ -f "$WHEELS/requirements.txt" ] || { echo "no $WHEELS/requirements.txt: run gpu_wheels.sh here first"; return 3; }
  # a venv of its own whose site-packages come first, then the torch interpreter's (site.addsitedir in a .pth,
  # so that interpreter's own .pth files work too): the pinned wheels shadow the image's copies, torch stays
  local site; site=$("$PY" -c 'import site, sys; print("\n".join(site.getsitepackages()))')
  rm -rf "$VENV"
  "$PY" -m venv --without-pip "$VENV"
  local own; own=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  while read -r d; do echo "import site; site.addsitedir('$d')"; done <<<"$site" > "$own/zz_torch_site.pth"
  "$VENV/bin/python" -c 'import torch, pip; print("overlay venv: torch", torch.__version__, "from", torch.__file__)'
  "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --no-compile --ignore-installed \
      -r "$WHEELS/requirements.txt"
  "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e "$REPO" \
      --config-settings editable_mode=compat
  "$VENV/bin/python" -c 'import claimbench, snakemake, lm_eval, timm, pydantic, torch
print("installed: torch", torch.__version__, "timm", timm.__version__, "pydantic", pydantic.VERSION)'
}
IMPORTS='import claimbench.train, snakemake, lm_eval, timm, pydantic, jsonschema, tokenizers, yaml'
if want install; then
  if [ "$DRY" = 1 ] && [ "${INSTALL:-0}" != 1 ] && [ "$PRINT" = 0 ] && "$PY" -c "$IMPORTS" 2>/dev/null; then
    say "install: skipped (dry run, packages import; INSTALL=1 forces it)"
    echo '{"stage": "install", "rc": 0, "skipped": "packages import"}' > "$OUT/.stages/install.json"
  else
    stage install 180 bash -c "$(declare -f install); WHEELS='$WHEELS' VENV='$VENV' PY='$PY' REPO='$REPO' install" \
      && PY=$VENV/bin/python
    # a later stage (or rerun with --stages) uses the overlay venv when there is one
  fi
elif [ -x "$VENV/bin/python" ]; then
  PY=$VENV/bin/python
fi
[ "$PRINT" = 1 ] || "$PY" -c "$IMPORTS" 2>>"$LOG" || say "WARNING: $PY cannot import the project's packages; the next stages will fail"
[ -f "$OUT/env.json" ] && want install && [ "$PY" = "$VENV/bin/python" ] && \
  "$PY" scripts/speed/gpu_env.py --out "$OUT/env.json" >> "$LOG" 2>&1  # again: the installed versions

# ---------------------------------------------------------------- data: random tokens and images (throughput only)
GPT_DATA=$WORK/data/gpt-$VOCAB
IMG_DATA=$WORK/data/images-32x32x3-100
if want data; then
  stage data 120 "$PY" scripts/speed/synth_data.py --gpt "$GPT_DATA" --vocab "$VOCAB" --tokens "$TOKENS" \
    --images "$IMG_DATA" --n "$IMAGES"
fi

# ---------------------------------------------------------------- speed: Trainer vs plain loop, MFU
COMMON=(--device "$DEVICE" --dtype "$DTYPE" "${COMPILE[@]}" --threads "$([ "$DRY" = 1 ] && echo 1 || echo 4)"
        --gpt-data "$GPT_DATA" --image-data "$IMG_DATA" --note "gpu_check.sh$([ "$DRY" = 1 ] && echo ' --dry-run')")
if want speed; then
  stage speed 200 "$PY" scripts/speed/speed.py "${COMMON[@]}" --only throughput --cases "${SPEED_CASES[@]}" \
    --steps "$SPEED_STEPS" --repeats "$SPEED_REPEATS" --out "$OUT/speed"
fi

# ---------------------------------------------------------------- grid: Snakemake, --resources gpu=1
grid() {
  set -e
  local dir=$WORK/grid
  rm -rf "$dir" && mkdir -p "$dir"
  "$PY" - "$REPO/config/gpu-check.yaml" "$dir/config.yaml" <<EOF
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg["runs_dir"], cfg["results_dir"] = "$dir/runs", "$dir/results"
cfg["data"] = {"synthetic50k": {"dir": "$GPT_DATA"}}
e = cfg["grid"][0]
e["size"] = "$GRID_SIZE"
e["set"].update({"train.steps": $GRID_STEPS, "train.batch_size": $GRID_BATCH, "train.device": "$DEVICE",
                 "train.dtype": "$DTYPE", "train.compile": ${#COMPILE[@]} > 0,
                 "eval.every": max(1, $GRID_STEPS // 2), "ckpt.every": max(1, $GRID_STEPS // 2)})
if "$DEVICE" == "cpu":
    cfg["threads_per_run"] = 1
yaml.safe_dump(cfg, open(sys.argv[2], "w"), sort_keys=False)
EOF
  local sm=("$PY" -m snakemake "$dir/results/runs.csv" --snakefile "$REPO/Snakefile" --configfile "$dir/config.yaml"
            --profile "$REPO/config/gpu-local" --cores "$([ "$DEVICE" = cpu ] && echo 2 || echo 8)"
            --resources gpu=1 "${GRID_HOOKS[@]}")
  echo "+ ${sm[*]}"
  "${sm[@]}" -n --quiet rules > "$dir/dag.txt" 2>&1 || { cat "$dir/dag.txt"; return 1; }
  cat "$dir/dag.txt"
  local t0; t0=$(date +%s%N)
  "${sm[@]}" > "$dir/snakemake.log" 2>&1 || { tail -40 "$dir/snakemake.log"; echo "snakemake failed"; }
  local wall; wall=$(secs_since "$t0")
  grep -E "gpu_slots|rule |Finished|steps|error|Error" "$dir/snakemake.log" | head -40 || true
  cp "$dir/dag.txt" "$OUT/grid_dag.txt"; cp "$dir/snakemake.log" "$OUT/grid_snakemake.log"
  "$PY" - "$dir" "$wall" "$OUT/grid.json" <<'EOF'
import json, sys
from pathlib import Path
d, wall, out = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
runs = []
for res in sorted(d.glob("runs/*/result.json")):
    r = json.loads(res.read_text())
    log = res.parent / "train.log"
    pins = [ln for ln in log.read_text().splitlines() if ln.startswith("claimbench gpu-run")] if log.exists() else []
    rows = [json.loads(ln) for ln in (res.parent / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    last = next((row for row in reversed(rows) if "mfu" in row), rows[-1] if rows else {})
    runs.append({"run": res.parent.name, "status": r.get("status"), "wall_s": r.get("wall_s"),
                 "final_train_loss": r.get("final_train_loss"), "final_val_loss": r.get("final_val_loss"),
                 "steps": r.get("steps"), "pinning": pins, "last_logged": last,
                 "files": sorted(p.name for p in res.parent.iterdir())})
summary = {"wall_s": wall, "runs": runs, "dag": (d / "dag.txt").read_text(),
           "ok": bool(runs) and all(r["status"] == "ok" for r in runs) and (d / "results/runs.csv").exists()}
out.write_text(json.dumps(summary, indent=2))
print(json.dumps({k: v for k, v in summary.items() if k != "dag"}, indent=2)[:4000])
sys.exit(0 if summary["ok"] else 1)
EOF
}
if want grid; then
  stage grid 150 env PY="$PY" REPO="$REPO" WORK="$WORK" OUT="$OUT" GPT_DATA="$GPT_DATA" bash -c \
    "$(declare -p DEVICE DTYPE COMPILE GRID_SIZE GRID_STEPS GRID_BATCH GRID_HOOKS); $(declare -f grid secs_since); grid"
fi

# ---------------------------------------------------------------- methods: per-step overheads at that size
if want methods; then
  stage methods 120 "$PY" scripts/speed/speed.py "${COMMON[@]}" --only methods "${METHODS_ARGS[@]}" \
    --out "$OUT/methods"
fi
if want flerm; then
  stage flerm 60 "$PY" scripts/speed/speed.py "${COMMON[@]}" --only flerm "${FLERM_ARGS[@]}" --out "$OUT/flerm"
fi

# ---------------------------------------------------------------- summary and pack
[ "$PRINT" = 1 ] && exit 0
"$PY" - "$OUT" "$DRY" "$(( $(date +%s) - T0 ))" <<'EOF' 2>&1 | tee -a "$LOG" >> "$LOG2"
import json, sys
from pathlib import Path
out, dry, wall = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
read = lambda name: json.loads((out / name).read_text()) if (out / name).exists() else None
stages = {p.stem: json.loads(p.read_text()) for p in sorted((out / ".stages").glob("*.json"))}
s = {"dry_run": dry, "wall_s": wall, "stages": stages}
env = read("env.json")
if env:
    t = env.get("torch", {})
    s["env"] = {"python": env.get("python"), "torch": t.get("version"), "cuda_build": t.get("cuda_build"),
                "gpus": [d["name"] for d in t.get("devices", [])],
                "driver": next((g.get("driver_version") for g in env.get("nvidia_smi", {}).get("gpus", [])), None),
                "peak_bf16": t.get("peak_bf16")}
sp = read("speed.json")
if sp:
    s["peak"] = sp["peak"]
    s["throughput"] = [{k: r.get(k) for k in ("workload", "size", "params", "batch", "units_per_sample", "vocab",
                        "unit", "plain_per_s", "harness_per_s", "ratio_wall", "mfu", "mfu_plain")}
                       for r in sp["throughput"]]
m = read("methods.json")
if m:
    s["methods"] = [{k: r.get(k) for k in ("method", "setting", "base_step_s", "step_s", "overhead_wall")}
                    for r in m["methods"]]
f = read("flerm.json")
if f:
    s["flerm"] = f.get("flerm")
g = read("grid.json")
if g:
    s["grid"] = {"ok": g["ok"], "wall_s": g["wall_s"], "runs": [{k: r.get(k) for k in
                 ("run", "status", "wall_s", "final_val_loss", "pinning")} for r in g["runs"]]}
s["ok"] = all(st.get("rc") == 0 for st in stages.values())
(out / "summary.json").write_text(json.dumps(s, indent=2))
print(json.dumps(s, indent=2))
EOF
extra=(); [ -d "$WORK/grid/runs" ] && extra=(-C "$WORK" grid/runs grid/config.yaml)
# tar exits 1 when a file changed while it read it (the log it appends to, at least): the archive is still whole
tar_rc=0
tar czf "$OUT/gpu-check.tgz.tmp" --warning=no-file-changed --exclude='*.pt' --exclude=./work \
  --exclude=./gpu-check.tgz --exclude=./gpu-check.tgz.tmp -C "$OUT" . "${extra[@]}" 2>>"$LOG" || tar_rc=$?
[ "$tar_rc" -le 1 ] && mv "$OUT/gpu-check.tgz.tmp" "$OUT/gpu-check.tgz"
if [ -n "$PACK" ]; then
  cp "$OUT/summary.json" "$OUT/gpu-check.tgz" "$PACK"/ 2>/dev/null
  for f in speed.md methods.md flerm.md; do [ -f "$OUT/$f" ] && cp "$OUT/$f" "$PACK/"; done
  [ "$LOG2" = "$PACK/gpu_check.log" ] || cp "$LOG" "$PACK/"
fi
OK=$("$PY" -c "import json; print(int(json.load(open('$OUT/summary.json'))['ok']))" 2>/dev/null || echo 0)
say "done in $(( $(date +%s) - T0 ))s: $([ "$OK" = 1 ] && echo 'every stage passed' || echo 'SOME STAGE FAILED (summary.json)')"
[ "$OK" = 1 ]
