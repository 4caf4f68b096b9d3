#!/usr/bin/env bash
# Fetch the raw data of the offline multiple-choice task `cb_quartz`: QuaRTz (AI2, CC BY 4.0), as shipped
# in the PyPI wheel evals==3.0.1.post1 (MIT, 46 MB; far cheaper than the 358 MB BIG-bench sdist).
# Only one member is kept: data/lm_eval/raw/quartz_samples.jsonl. Idempotent and checksummed: a present,
# correct file is left alone; a wrong wheel or member fails loudly. Then `claimbench lm-eval-data` writes
# the tasks' jsonl (it needs no network).
#   usage: benchmarks/lm_eval_tasks/fetch_data.sh [OUT_DIR]     (PY=... to choose the Python with pip)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/data/lm_eval/raw}"
PY="${PY:-$ROOT/.venv/bin/python}"
WHEEL=evals-3.0.1.post1-py3-none-any.whl
WHEEL_SHA256=0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78
MEMBER=evals/registry/data/quartz/samples.jsonl
MEMBER_SHA256=e439668cc38aa157bb1a746d9540f61f29d7f494a6618a955c8e3b5f55a363e7
TARGET="$OUT/quartz_samples.jsonl"

if [ -f "$TARGET" ] && echo "$MEMBER_SHA256  $TARGET" | sha256sum --check --status; then
    echo "fetch_data: $TARGET present (sha256 ok)"
    exit 0
fi
mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download --quiet --no-deps --only-binary :all: "evals==3.0.1.post1" -d "$TMP"
echo "$WHEEL_SHA256  $TMP/$WHEEL" | sha256sum --check --quiet
"$PY" - "$TMP/$WHEEL" "$MEMBER" "$TMP/member" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], "wb") as f:
    f.write(z.read(sys.argv[2]))
PYEOF
echo "$MEMBER_SHA256  $TMP/member" | sha256sum --check --quiet
mv "$TMP/member" "$TARGET"
echo "fetch_data: wrote $TARGET (sha256 ok)"
