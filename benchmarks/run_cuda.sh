#!/usr/bin/env bash
# The GPU session behind the README's CUDA table: CUDA correctness tests, then `convzoo bench` (every family, both
# memory formats, forward and forward+backward, roofline and peers), and `convzoo compare`, each
# with its own time limit so one slow step cannot cost the others. Outputs go to $OUT (default benchmarks/results/cuda).
# Usage: bash benchmarks/run_cuda.sh            (on a machine with a CUDA device; torch, torchvision, timm installed)
#        DEVICE=cpu QUICK=1 bash benchmarks/run_cuda.sh   (a dry run of the same steps on CPU, tiny shapes)
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-benchmarks/results/cuda}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
CZ=("$PY" -c "from convzoo.cli import app; app()")
shape=(); tests=(tests/test_cuda.py tests/test_deform.py tests/test_bench.py tests/test_compare.py)
if [[ -n "${QUICK:-}" ]]; then
  shape=(--batch 1 --in 4 --out 8 --size 8); tests=(tests/test_cuda.py)
fi
status=0
step() {  # step NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, remember a failure, go on
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%T), limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name exit $rc"
  [[ $rc == 0 ]] || status=1
}
(nvidia-smi -L 2>/dev/null || true; "$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')")
step tests 120 "$PY" -m pytest -q -p no:cacheprovider -n 8 -rs "${tests[@]}" -k "cuda or non_finite"
step bench 240 "${CZ[@]}" bench --device "$DEVICE" "${shape[@]}" -o "$OUT/bench.json" --plot "$OUT/bench.png"
step compare 75 "${CZ[@]}" compare --device "$DEVICE" "${shape[@]}"
exit $status
