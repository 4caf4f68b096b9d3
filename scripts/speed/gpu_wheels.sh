#!/usr/bin/env bash
# Wheels for gpu_check.sh on a machine with PyTorch but no network (the lent H100/H200 image: Python 3.12,
# its own torch): the project's runtime dependencies at the versions pinned in pyproject.toml (and, for their
# own needs, the versions installed in this venv), never torch/torchvision/triton/nvidia-*. Run here, where PyPI
# is reachable; the folder is gitignored (build/) and travels with the device tool's `carry`.
#
#   scripts/speed/gpu_wheels.sh [DIR]          # default build/wheels
#   ALL=1 scripts/speed/gpu_wheels.sh          # also the heavy compiled packages the GPU image already has
#   PY_VERSIONS="3.11 3.12" scripts/speed/gpu_wheels.sh   # default "3.12" (the lent machines' Python)
#
# The device tool carries at most 64 MiB with the working tree (~6 MiB), so by default the big packages the lent
# machines' image already brings (numpy, pandas, scipy, matplotlib, pyarrow, scikit-learn, transformers, ...: the
# device notes' package list) are left out and gpu_check.sh uses the image's copies (their versions go into
# env.json); ~50 MiB for Python 3.12. ALL=1 with both Pythons is ~160 MiB: for a machine with nothing but torch.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-build/wheels}
PY=${PY:-python}
PY_VERSIONS=${PY_VERSIONS:-"3.12"}
ON_IMAGE="numpy pandas scipy matplotlib contourpy kiwisolver fonttools pillow pyarrow scikit-learn lxml aiohttp
       hf-xet regex transformers huggingface-hub"
skip=()
[ "${ALL:-0}" = 1 ] || read -r -a skip <<<"$(echo $ON_IMAGE)"
mkdir -p "$DIR"
"$PY" scripts/speed/gpu_deps.py --skip "${skip[@]}" > "$DIR/requirements.txt"
echo "gpu_wheels: $(wc -l < "$DIR/requirements.txt") distributions -> $DIR (python ${PY_VERSIONS})"
plat=()
for n in 17 24 27 28 31 34 35 38 39; do plat+=(--platform "manylinux_2_${n}_x86_64"); done
plat+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 --platform any)
fetch() {  # one pinned distribution: a binary wheel per Python version, or a pure one for all
  local req=$1 v got=0 log
  for v in $PY_VERSIONS; do
    # --no-deps: requirements.txt is already the whole closure (computed from this venv), and pip's own resolver
    # would pull torch and the CUDA libraries back in through timm/peft/accelerate
    if log=$("$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$v" --implementation cp \
        --abi "cp${v/./}" --abi abi3 --abi none "${plat[@]}" -d "$DIR" "$req" 2>&1); then
      got=1
      # a pure-Python or abi3 wheel serves every version: no second download
      ls "$DIR" | grep -qiE "^$(echo "${req%%==*}" | sed 's/[-_.]/[-_.]/g')-${req##*==}-(py3|py2.py3|cp3[0-9]+-abi3)-" \
        && return 0
    fi
  done
  [ $got = 1 ] && return 0
  # no wheel on the index (an sdist only, e.g. connection-pool): build a wheel here; only pure Python will do
  "$PY" -m pip wheel -q --no-deps -w "$DIR" "$req" 2>&1 | grep -v '^WARNING: Location' || true
  ls "$DIR" | grep -qiE "^$(echo "${req%%==*}" | sed 's/[-_.]/[-_.]/g')-${req##*==}-py[23.]*-none-any\.whl$" \
    || { echo "gpu_wheels: no usable wheel for $req: $log" >&2; return 1; }
}
fails=0
while read -r req; do
  [ -n "$req" ] || continue
  fetch "$req" || fails=$((fails + 1))
done < "$DIR/requirements.txt"
[ "$fails" = 0 ] || { echo "gpu_wheels: $fails distribution(s) without a wheel" >&2; exit 1; }
echo "gpu_wheels: $(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR"
