#!/usr/bin/env bash
# The GPU session behind the docs' GPU pages, as one prepared run of at most 8 min 5 s (the step limits add up
# to 485 s): the CUDA tests (every
# family vs the oracle and the CPU gradients, the Triton forms pinned, CUDA graph capture), the Triton kernels against
# torchvision / timm / their PyTorch forms (benchmarks/bench_gpu_kernels.py), `convzoo bench` (every family, both
# memory formats, fwd and fwd+bwd, "vs fastest native", roofline, peers), `convzoo compare`, and last the
# torch.compile(mode="reduce-overhead") tests (compilation is the slow part). Each step has its own time limit so
# one slow step cannot cost the others. Logs go to $OUT (default benchmarks/results/cuda); the results files
# (convzoo.perf.results' format, rendered by the docs site's Performance pages) to $RESULTS (default
# benchmarks/results: cuda_bench.json with cuda_bench.png, cuda_kernels.json; a QUICK dry run writes them to $OUT).
# Usage: bash benchmarks/run_cuda.sh            (on a machine with a CUDA device; torch, torchvision, timm installed)
#        DEVICE=cpu QUICK=1 bash benchmarks/run_cuda.sh   (a dry run of the same steps on CPU, tiny shapes; the Triton
#                                                          kernels through Triton's interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-benchmarks/results/cuda}
RESULTS=${RESULTS:-$([[ -n "${QUICK:-}" ]] && echo "$OUT" || echo benchmarks/results)}
mkdir -p "$OUT" "$RESULTS"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
CZ=("$PY" -c "from convzoo.cli import app; app()")
shape=(); kernels=(); interpret=(); workers=8
tests=(tests/test_cuda.py tests/test_deform.py tests/test_bench.py tests/test_compare.py)
if [[ -n "${QUICK:-}" ]]; then
  shape=(--batch 1 --in 4 --out 8 --size 8); tests=(tests/test_cuda.py); workers=2
  kernels=(--batches 1 --channels 4 8 --size 6 --rounds 1 --names deformable_v2 involution condconv)
fi
[[ $DEVICE == cpu ]] && interpret=(env TRITON_INTERPRET=1)
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
torchvision.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')
try:
    import triton; print('triton', triton.__version__)
except Exception as exc:
    print('triton not importable:', exc)") | tee "$OUT/machine.log"
step tests 90 "$PY" -m pytest -q -p no:cacheprovider -n "$workers" -rs "${tests[@]}" \
  -k "(cuda or non_finite) and not compile_reduce_overhead"
step kernels 110 "${interpret[@]}" "$PY" benchmarks/bench_gpu_kernels.py --device "$DEVICE" "${kernels[@]}" \
  -o "$RESULTS/cuda_kernels.json"
step bench 160 "${CZ[@]}" bench --device "$DEVICE" "${shape[@]}" -o "$RESULTS/cuda_bench.json" \
  --plot "$RESULTS/cuda_bench.png"
step compare 35 "${CZ[@]}" compare --device "$DEVICE" "${shape[@]}"
step compile 90 "$PY" -m pytest -q -p no:cacheprovider -n "$((workers + 4))" -rs tests/test_cuda.py -k compile_reduce_overhead
exit $status
