#!/usr/bin/env bash
# The device check in one call, on a machine with CUDA (an H100 or H200):
#   1. `python -m hf_stackshape.benchmarks.device` (= `stackshape bench device`): every method at the 1B- and
#      8B-class Llama shapes in bf16 with random weights, batch 1 and 8 -- ms per token, ratio to greedy, CUDA peak
#      memory, the ARGS reward-model cache per row -- and the float32 fast-vs-naive ARGS verdict on CUDA;
#   2. `pytest -m gpu tests/test_gpu.py`: bf16 / fp16 fast paths, devices, attention, a real out-of-memory retry.
#
# Needs only torch, transformers, accelerate and peft (plus pytest for step 2) and no network: the models are
# built from configs; the tokenizer is $TOKENIZER_DIR (a saved tokenizer folder) if set, else one built in memory.
# Without pytest on the machine, install it into a folder here and let it travel with the tree:
#   pip install --target .device_deps pytest      # then carry .device_deps (it is git-ignored)
#
# Run from the repository root:   bash scripts/device_check.sh [OUTPUT_DIR]
# Results: OUTPUT_DIR (default $OUT, else ./device_check) gets device.json, device.txt and pytest.txt.
# Exit status: 0 when both steps passed.
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:-device_check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -d .device_deps ] && export PYTHONPATH="$PYTHONPATH:$PWD/.device_deps"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -n "${TOKENIZER_DIR:-}" ]; then export STACKSHAPE_TEST_TOKENIZER="$TOKENIZER_DIR"; fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1 || true
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'gpus', torch.cuda.device_count())" | tee -a "$out/gpu.txt"

status=0
# DEVICE_BENCH_ARGS replaces the bench's options (a dry run on a CPU: "--device cpu --tiny").
timeout "${DEVICE_BENCH_TIMEOUT:-420}" python -m hf_stackshape.benchmarks.device ${DEVICE_BENCH_ARGS:---device cuda} \
    --output "$out/device.json" 2>&1 | tee "$out/device.txt"
bench=${PIPESTATUS[0]}
[ "$bench" -ne 0 ] && { echo "device bench failed (exit $bench)"; status=1; }

if python -c "import pytest" 2>/dev/null; then
    timeout "${DEVICE_TESTS_TIMEOUT:-150}" python -m pytest -m gpu -q -rs -p no:cacheprovider tests/test_gpu.py 2>&1 \
        | tee "$out/pytest.txt"
    tests=${PIPESTATUS[0]}
    [ "$tests" -ne 0 ] && { echo "gpu tests failed (exit $tests)"; status=1; }
else
    echo "pytest is not installed here: skipped tests/test_gpu.py (see the header of this script)" | tee "$out/pytest.txt"
    status=1
fi
exit $status
