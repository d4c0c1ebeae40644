#!/usr/bin/env bash
# One script that checks a GPU machine end to end, in under 8 minutes on one H100:
#   (time limits per step: 200 + 90 + 30 + 150 s, so at most 8 minutes)
#   1. the GPU-marked tests (bf16 training steps of every family on CUDA, fused SDPA
#      kernels at the real shapes, torch.compile of every backbone, resume on the GPU,
#      fused AdamW),
#   2. the throughput benchmark at MtM's reference shapes (bf16 eager and compiled, MFU,
#      data wait) and the Perceiver throughput at its published sizes,
#   3. a tiny end-to-end workflow with device: cuda,
# and appends its figures, with the card's name, to benchmarks/RESULTS.md
# (GPU_CHECK_RESULTS overrides the file). Without CUDA it says so and skips all three.
#
# Usage (repository root): bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
RESULTS=${GPU_CHECK_RESULTS:-benchmarks/RESULTS.md}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device visible (torch.cuda.is_available() is False):"
    echo "gpu_check: skipping the GPU tests, the GPU throughput benchmarks and the cuda workflow."
    echo "gpu_check: on CPU, the bf16 rehearsal is: $PY -m pytest tests/test_bf16_rehearsal.py"
    exit 0
fi

LOG=$(mktemp -d)
STATUS=0
started=$(date +%s)
card=$("$PY" -c 'import torch; print(torch.cuda.get_device_name())')
echo "gpu_check on $card"

step() {  # step NAME TIMEOUT_S COMMAND...: run, keep its output, remember a failure
    local name=$1 limit=$2
    shift 2
    local t0=$(date +%s)
    timeout "$limit" "$@" >"$LOG/$name.txt" 2>&1
    local rc=$?
    echo "$name: exit $rc in $(( $(date +%s) - t0 )) s" | tee -a "$LOG/summary.txt"
    [ $rc -eq 0 ] || STATUS=1
    tail -n 5 "$LOG/$name.txt"
}

step tests 200 "$PY" -m pytest -m gpu -q -p no:cacheprovider \
    tests/test_gpu.py tests/test_bf16_rehearsal.py tests/test_optim.py
step throughput 90 "$PY" benchmarks/train_throughput.py --devices cuda --steps 10 --warmup 3
step perceiver 30 "$PY" benchmarks/perceiver_throughput.py --device cuda --neurons 300 --steps 5
step workflow 150 "$PY" benchmarks/gpu_workflow.py --device cuda

{
    echo
    echo "## gpu_check.sh on $card, $(date -u +%Y-%m-%d)"
    echo
    echo "Command: \`bash benchmarks/gpu_check.sh\` (commit $(git rev-parse --short HEAD 2>/dev/null)," \
         "torch $("$PY" -c 'import torch; print(torch.__version__)'), $(( $(date +%s) - started )) s in all)."
    echo
    echo '```'
    cat "$LOG/summary.txt"
    grep -E "passed|failed|error" "$LOG/tests.txt" | tail -n 3
    grep -vE "^#" "$LOG/throughput.txt" | tail -n 3
    tail -n 4 "$LOG/perceiver.txt"
    tail -n 1 "$LOG/workflow.txt"
    echo '```'
} >>"$RESULTS"
echo "gpu_check: figures appended to $RESULTS; logs in $LOG; $( [ $STATUS -eq 0 ] && echo all passed || echo SOME STEPS FAILED )"
exit $STATUS
