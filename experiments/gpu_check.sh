#!/usr/bin/env bash
# The GPU check, as one prepared run (the device machine has torch but no registry):
#   OUT=/some/folder bash experiments/gpu_check.sh
# CUDA tests, the default training runs on CUDA, a torchrun smoke run (one process, NCCL), the
# benchmark, compare's speed table and a profile of the training step.
# Fashion-MNIST comes from $FASHION_MNIST (default .device/fashion-mnist, a git-ignored copy
# of Debian's files) when the machine has no dataset-fashion-mnist package.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lintorch-gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
FM=${FASHION_MNIST:-.device/fashion-mnist}
if [ ! -e /usr/share/datasets/fashion-mnist ] && [ -d "$FM" ]; then
    mkdir -p /usr/share/datasets && cp -r "$FM" /usr/share/datasets/fashion-mnist
fi
export LINTORCH_DATA=/usr/share/datasets/fashion-mnist
RUNS=$(mktemp -d)

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python -c "import sys, torch, torchvision; print('python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__)"
    nproc
} > "$OUT/env.txt" 2>&1

# CUDA tests, plus the loss tests under this machine's torch (the dependency ranges' low end).
timeout 150 python -m pytest -q -p no:cacheprovider -m "cuda or not slow" \
    tests/test_losses.py tests/test_models.py tests/test_train.py tests/test_data.py \
    tests/test_search.py tests/test_compare.py tests/test_board.py tests/test_sweep.py > "$OUT/pytest.txt" 2>&1

# The default runs on CUDA: time to accuracy, data loading included.
for spec in "linear softmax" "linear svm" "mlp softmax"; do
    set -- $spec
    timeout 90 python -m lintorch.train --dataset fashion-mnist --device cuda --model "$1" \
        --loss "$2" --logdir "$RUNS" --run-name "$1-$2" --quiet --no-download
done
python - "$RUNS" > "$OUT/train.txt" 2>&1 <<'PY'
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1]).glob("*/metrics.json")):
    m = json.loads(p.read_text())
    print(f"{p.parent.name:16s} test {100 * m['test']['accuracy']:.2f}%  wall {m['wall_time_s']:.1f}s"
          f"  load {m['data_load_s']:.2f}s  epochs {len(m['history'])}  {m['device']}")
PY

# torchrun on one GPU: the NCCL process group, DDP and the run folder written by process 0
timeout 90 python -m torch.distributed.run --standalone --nproc-per-node 1 -m lintorch.train \
    --dataset fashion-mnist --device cuda --epochs 2 --logdir "$RUNS" --run-name torchrun \
    --quiet --no-download > "$OUT/torchrun.txt" 2>&1
python -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['world_size'], m['backend'], m['test'])" \
    "$RUNS/torchrun/metrics.json" >> "$OUT/torchrun.txt" 2>&1

timeout 420 python experiments/benchmark.py --device cuda --json "$OUT/bench.json" \
    > "$OUT/bench.txt" 2>&1
timeout 60 python -m lintorch.compare --no-train --device cuda --json "$OUT/compare.json" \
    > "$OUT/compare.txt" 2>&1
for graphs in --cuda-graphs --no-cuda-graphs; do
    timeout 60 python experiments/profile_step.py --dataset fashion-mnist --device cuda \
        --no-download $graphs --rows 30 > "$OUT/profile$graphs.txt" 2>&1
done
echo done >> "$OUT/env.txt"
