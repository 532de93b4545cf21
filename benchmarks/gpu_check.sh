#!/usr/bin/env bash
# Every device check in one prepared run (a lent GPU machine is scarce): the GPU benchmark,
# the GPU-only tests, then the kernel equivalence tests on CUDA. Results go to $OUT.
# Needs python3 with torch + triton (+ pytest, hypothesis; timm/torchvision for the peer rows).
set -u
OUT=${OUT:-/tmp/fastmix-gpu}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } 2>&1 | tee "$OUT/machine.txt"
# an install-free copy of the package: fastmix/ with kernels/ as fastmix.kernels
site=$(mktemp -d)
cp -r fastmix "$site/fastmix"
cp -r kernels "$site/fastmix/kernels"
export PYTHONPATH="$site" PYTHONUNBUFFERED=1
timeout "${BENCH_TIMEOUT:-180}" python3 -P benchmarks/compare.py --device cuda --shapes 256x3x224x224 \
    --dtypes float32,bfloat16,uint8 --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
timeout "${GPU_TEST_TIMEOUT:-120}" python3 -P -m pytest tests/test_gpu.py tests/test_pieces.py -q -p no:cacheprovider \
    -k "gpu or cuda or sync or test_gpu or bound" 2>&1 | tee "$OUT/test_gpu.log"
# never run on a GPU before: the segment hand-offs of long cycles, the fused samplers, the mask fills
timeout "${NEW_TEST_TIMEOUT:-200}" python3 -P -m pytest tests/test_segments.py tests/test_fused_sampling.py \
    tests/test_masks.py tests/test_nonfinite.py tests/test_launch.py -q -p no:cacheprovider 2>&1 | tee "$OUT/test_new.log"
# the family's kernels on CUDA (the piece pass, FMix's and SaliencyMix's blends on the device)
timeout "${FAMILY_TEST_TIMEOUT:-120}" python3 -P -m pytest tests/test_pieces_kernel.py tests/test_family_masks.py \
    -q -p no:cacheprovider -k "kernel" 2>&1 | tee "$OUT/test_family.log"
timeout "${FAMILY_TIMEOUT:-60}" python3 -P benchmarks/family.py --device cuda --shape 256x3x224x224 --repeat 20 \
    2>&1 | tee "$OUT/family.log"
timeout "${KERNEL_TEST_TIMEOUT:-200}" python3 -P -m pytest tests/test_kernels.py -q -p no:cacheprovider \
    --durations=5 2>&1 | tee "$OUT/test_kernels.log"
python3 -P -m fastmix demo --device cuda --out "$OUT/demo.png" 2>&1 | tee "$OUT/demo.log"
