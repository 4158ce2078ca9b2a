#!/usr/bin/env bash
# Speed over commits with asv (docs/speed.md): the history subset, the CI gate, the page.
#
#   suites/speed.sh history [--existing] [REVS...]
#         measure commits (default: those in reports/speed/commits.txt) on the history subset
#         and copy asv's results to $SPEED_OUT/results/. Default: one virtualenv, the project
#         built and installed at each commit (asv.conf.json). --existing: the Python running
#         asv (e.g. a CUDA build of torch), each commit checked out in a temporary git
#         worktree and put first on the benchmarks' path (ASV_PYTHONPATH); nothing installed.
#   suites/speed.sh gate [BASE] [FACTOR]
#         asv continuous BASE HEAD on the history subset (default main, 1.25): exit status 1
#         when a case is slower by more than FACTOR and asv finds the difference significant
#   suites/speed.sh page
#         python -m stability.speed --results $SPEED_OUT/results --out $SPEED_OUT
#
# Environment:
#   ASV_MACHINE     asv machine name (default: the only entry of ~/.asv-machine.json);
#                   the recorded CPU history uses epyc-2core (and xeon-2core-shared)
#   SPEED_DEVICE    cpu (default) or cuda: which cases of the subset
#   SPEED_OUT       results and page folder (default reports/speed)
#   SPEED_COMMITS   commit list for `history` (default reports/speed/commits.txt)
#   HISTORY_ROUNDS  interleaved rounds per commit for `history` (default 6)
#   GATE_ROUNDS     interleaved rounds per commit for `gate` (default 4)
#   ASV_CONFIG      asv configuration (default asv.conf.json)
# asv keeps its machine file in $HOME (~/.asv-machine.json): run `asv machine --yes` once
# (in CI: export HOME=$(mktemp -d) first).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${SPEED_OUT:-reports/speed}"
COMMITS="${SPEED_COMMITS:-reports/speed/commits.txt}"
CONFIG="${ASV_CONFIG:-asv.conf.json}"
DEVICE="${SPEED_DEVICE:-cpu}"
PY="${PYTHON:-python}"
case "$DEVICE" in cpu|cuda) ;; *) echo "suites/speed.sh: SPEED_DEVICE must be cpu or cuda, not '$DEVICE'" >&2; exit 2 ;; esac

# The history subset: a few cases of the speed-critical paths, each present from the first
# measured commit on (JacobianDecay and GradientHalfLife are skipped, n/a, before the probes
# existed). asv matches each regex against "name(param, ...)".
HISTORY_BENCH=(
    "TrainStep\.time_train_step\('(spectral|householder|dense|torch\.nn\.RNN)', 1000, 128, '$DEVICE'\)"
    "MaterializeReflectedW\.time_matrix_forward_backward\('(spectral|householder)', 256, 'n', '$DEVICE'\)"
    "MaterializeW\.time_matrix_forward_backward\('exprnn', 256, '$DEVICE'\)"
    "JacobianDecay\.time_jacobian_decay\('spectral', '$DEVICE'\)"
    "EngineAgreement\.track_gradient_difference_vs_loop\('spectral', 'fused', '$DEVICE'\)"
    "GradientHalfLife\.track_half_life_at_init\('spectral', '$DEVICE'\)"
)
BENCH_ARGS=()
for regex in "${HISTORY_BENCH[@]}"; do BENCH_ARGS+=(--bench "$regex"); done

command -v asv >/dev/null || { echo "suites/speed.sh: asv is not installed (pip install -e '.[bench]')" >&2; exit 2; }
need_machine() {
    MACHINE="${ASV_MACHINE:-$("$PY" -c 'import json, os
try:
    names = [k for k in json.load(open(os.path.expanduser("~/.asv-machine.json"))) if k != "version"]
except OSError:
    names = []
print(names[0] if len(names) == 1 else "")')}"
    [ -n "$MACHINE" ] || { echo "suites/speed.sh: set ASV_MACHINE (no single machine in ~/.asv-machine.json; run asv machine --yes)" >&2; exit 2; }
}
# Pin the allocator in every process below, as the benchmarks do themselves.
export MALLOC_MMAP_MAX_=0
export MALLOC_TRIM_THRESHOLD_=68719476736

usage() { sed -n '4,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

copy_results() {
    mkdir -p "$OUT/results"
    cp .asv/results/benchmarks.json "$OUT/results/"
    rm -rf "${OUT:?}/results/$MACHINE"
    cp -r ".asv/results/$MACHINE" "$OUT/results/$MACHINE"
    echo "suites/speed.sh: results in $OUT/results/$MACHINE; the page: suites/speed.sh page"
}

history() {
    local existing=0
    if [ "${1:-}" = "--existing" ]; then existing=1; shift; fi
    local hashes=()
    if [ "$#" -eq 0 ]; then
        mapfile -t hashes < <(grep -v '^\s*#' "$COMMITS" | awk 'NF {print $1}')
    else
        for rev in "$@"; do
            hashes+=("$(git rev-parse --verify -q "$rev^{commit}")") \
                || { echo "suites/speed.sh: unknown commit $rev" >&2; exit 2; }
        done
    fi
    echo "suites/speed.sh: measuring ${#hashes[@]} commits on $DEVICE, machine $MACHINE"
    if [ "$existing" = 0 ]; then
        local list
        list="$(mktemp)"
        printf '%s\n' "${hashes[@]}" > "$list"
        # asv's defaults per sample; 6 rounds instead of the benchmarks' 2, interleaved over
        # the commits (asv's default with virtualenvs), so load swings on a shared machine
        # spread over every commit instead of landing on one
        asv run --config "$CONFIG" --machine "$MACHINE" "${BENCH_ARGS[@]}" --record-samples \
            --attribute "rounds=${HISTORY_ROUNDS:-6}" --show-stderr "HASHFILE:$list"
        rm -f "$list"
    else
        # An interpreter that sees this Python's packages (torch, asv_runner, ...) but not an
        # installed stability's import hooks: a venv whose .pth lists the site-packages as
        # plain paths (their own .pth files, e.g. an editable install's finder, are not run).
        # Otherwise a module an old commit lacks would be imported from the installed copy.
        local hpy=".asv/history-python"
        if [ ! -x "$hpy/bin/python" ]; then
            "$PY" -m venv --without-pip "$hpy"
            "$PY" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' \
                > "$("$hpy/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/system-site.pth"
        fi
        local tree=".asv/history-worktree"
        for hash in "${hashes[@]}"; do
            git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
            git worktree add --detach -f "$tree" "$hash" >/dev/null
            ASV_PYTHONPATH="$PWD/$tree" asv run --config "$CONFIG" -E "existing:$PWD/$hpy/bin/python" \
                --machine "$MACHINE" --set-commit-hash "$hash" "${BENCH_ARGS[@]}" --record-samples \
                --attribute "rounds=${HISTORY_ROUNDS:-6}" --show-stderr
        done
        git worktree remove --force "$tree"
    fi
    copy_results
}

case "${1:-}" in
history)
    shift
    need_machine
    history "$@"
    ;;
gate)
    need_machine
    BASE="${2:-main}"
    FACTOR="${3:-1.25}"
    # asv continuous measures both commits in interleaved rounds (4 instead of the benchmarks'
    # 2: with 2, one burst of load on a shared machine made a case 1.31x "slower") and exits 1
    # when a case got worse by more than FACTOR and the difference is significant (or a case
    # newly fails)
    asv continuous --config "$CONFIG" --machine "$MACHINE" "${BENCH_ARGS[@]}" \
        --attribute "rounds=${GATE_ROUNDS:-4}" --factor "$FACTOR" --show-stderr "$BASE" HEAD
    ;;
page)
    "$PY" -m stability.speed --results "$OUT/results" --out "$OUT"
    ;;
*)
    usage
    ;;
esac
