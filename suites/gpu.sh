#!/usr/bin/env bash
# GPU benchmark run (docs/benchmarking.md):
#   0. the CUDA tests (`pytest -k cuda`: every engine, transition and gated cell on the device
#      against the CPU, in float64), log to $OUT/tests-cuda.log; a failure stops the script;
#   1. the asv suite's CUDA cases, saved under .asv/results/<machine>/ for this commit and
#      copied with a text summary (asv show) to $OUT/asv/;
#   2. the core speed comparison, `python -m stability.bench --device cuda --sizes table` (issue
#      20's sizes, n = 64..512, T = 100 and 1000, against cuDNN's nn.RNN), to $OUT/;
#   3. speed over commits for the CUDA cases (docs/speed.md): the commits of
#      reports/speed/commits.txt, each checked out in a git worktree and measured with this
#      Python (suites/speed.sh history --existing), and the offline page, to $OUT/speed/.
#
# Usage: suites/gpu.sh [OUT]            OUT defaults to reports/bench/gpu
# Environment:
#   ASV_MACHINE   asv machine name (default: <hostname>-gpu)
#   ASV_BENCH     asv --bench regex (default: 'cuda', i.e. every CUDA case; '.' for all)
#   ASV_QUICK=1   smoke run: asv --quick (nothing saved) and stability.bench --quick
#   BENCH_ROUNDS  rounds of stability.bench (default 15)
#   GPU_HISTORY=0 skip step 3 (it is skipped under ASV_QUICK=1 as well)
# asv writes its machine file to $HOME (~/.asv-machine.json); set HOME to a scratch folder
# where the home directory is read-only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-reports/bench/gpu}"
MACHINE="${ASV_MACHINE:-$(hostname)-gpu}"
BENCH="${ASV_BENCH:-'cuda'}"
ROUNDS="${BENCH_ROUNDS:-15}"
PY="${PYTHON:-python}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "suites/gpu.sh: torch sees no CUDA device here; nothing to do" >&2
    exit 2
fi
command -v asv >/dev/null || { echo "suites/gpu.sh: asv is not installed (pip install 'stability[bench]')" >&2; exit 2; }

# Pin the allocator for every process below (stability.bench records that it was set).
export MALLOC_MMAP_MAX_=0
export MALLOC_TRIM_THRESHOLD_=68719476736

mkdir -p "$OUT/asv"
COMMIT="$(git rev-parse HEAD)"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "suites/gpu.sh: warning: uncommitted changes; asv results are filed under $COMMIT" >&2
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "device", torch.cuda.get_device_name(0))' \
    | tee "$OUT/asv/device.txt"

"$PY" -m pytest -q -rs -k cuda tests/ 2>&1 | tee "$OUT/tests-cuda.log"

asv machine --yes --machine "$MACHINE" >/dev/null
if [ "${ASV_QUICK:-0}" = "1" ]; then
    asv run --python=same --machine "$MACHINE" --quick --show-stderr --bench "$BENCH" 2>&1 | tee "$OUT/asv/run.log"
    BENCH_ARGS=(--quick --rounds 2)
else
    asv run --python=same --machine "$MACHINE" --set-commit-hash "$COMMIT" --show-stderr \
        --bench "$BENCH" 2>&1 | tee "$OUT/asv/run.log"
    asv show "$COMMIT" --machine "$MACHINE" --python=same > "$OUT/asv/show.txt" 2>&1 || true
    rm -rf "$OUT/asv/results"
    cp -r ".asv/results/$MACHINE" "$OUT/asv/results"
    BENCH_ARGS=(--rounds "$ROUNDS" --sizes table)
fi

"$PY" -m stability.bench --device cuda --out "$OUT" "${BENCH_ARGS[@]}"

if [ "${ASV_QUICK:-0}" != "1" ] && [ "${GPU_HISTORY:-1}" = "1" ]; then
    SPEED_OUT="$OUT/speed" SPEED_DEVICE=cuda ASV_MACHINE="$MACHINE" PYTHON="$PY" \
        suites/speed.sh history --existing 2>&1 | tee "$OUT/speed-history.log"
    SPEED_OUT="$OUT/speed" PYTHON="$PY" suites/speed.sh page
fi
echo "suites/gpu.sh: results in $OUT (bench.md, bench.csv, bench.json, rounds.csv, asv/, speed/)"
