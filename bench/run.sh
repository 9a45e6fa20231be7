#!/usr/bin/env bash
# Benchmarks of issue 9: spack-installer against nq, task-spooler and the file-system floor.
#
#   bench/run.sh           the full form (about 10 minutes); rewrites BENCHMARKS.md
#   bench/run.sh --quick   the short form for CI (under 3 minutes once built); prints the
#                          table, writes $CARGO_TARGET_DIR/BENCHMARKS.quick.md, leaves BENCHMARKS.md alone
#
# Installs what it needs (as root, from Debian: nq, task-spooler, a C compiler), builds the
# release binary, the no-op stand-in for Spack, the fsync floor and the harness, then runs
# them. It never fails on a number: a measurement that cannot be made shows as n/a.
# Environment: CARGO_TARGET_DIR (default target/), BENCH_WORK (scratch dir on the file
# system to measure, default /var/tmp/spack-installer-bench), BENCH_ONLY=submit,pickup,
# drain,status,idle,rank (a subset, for development).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=()
report=$root/BENCHMARKS.md
command="bench/run.sh"
if [[ ${1:-} == --quick ]]; then
    quick=(--quick)
    report=${CARGO_TARGET_DIR:-$root/target}/BENCHMARKS.quick.md
    command="bench/run.sh --quick"
fi

need=()
command -v nq >/dev/null || need+=(nq)
command -v tsp >/dev/null || need+=(task-spooler)
command -v cc >/dev/null || need+=(gcc)
command -v strace >/dev/null || need+=(strace)
if ((${#need[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing ${need[*]}" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
            echo "warning: could not install ${need[*]}; their figures will be n/a" >&2
    else
        echo "warning: ${need[*]} missing and not root with apt-get; their figures will be n/a" >&2
    fi
fi

target=${CARGO_TARGET_DIR:-$root/target}
export CARGO_TARGET_DIR=$target
cargo build --release --quiet
cargo build --release --quiet --manifest-path bench/harness/Cargo.toml

work=${BENCH_WORK:-/var/tmp/spack-installer-bench}
rm -rf "$work"
mkdir -p "$work/bin"
cc -O2 -o "$work/bin/noop" bench/noop.c
cc -O2 -o "$work/bin/floor" bench/floor.c

shm=()
if [[ -d /dev/shm && -w /dev/shm ]]; then
    shm=(--shm "$(mktemp -d /dev/shm/spack-installer-bench.XXXXXX)")
fi

# Sections measured by hand (from the heading above a `<!-- Not generated` marker to the
# end) are not the harness's to write: they are carried over to the new report.
kept=$(mktemp)
: >"$kept"
if [[ -f $report ]]; then
    # From the heading above the marker to the end of the file.
    awk '{ line[NR] = $0 } /^## / { h = NR } /^<!-- Not generated/ && !from { from = h }
         END { if (from) for (i = from; i <= NR; i++) print line[i] }' "$report" >"$kept"
fi

status=0
"$target/release/spack-installer-bench" "${quick[@]}" \
    --bin "$target/release/spack-installer" \
    --noop "$work/bin/noop" \
    --floor "$work/bin/floor" \
    --work "$work" \
    "${shm[@]}" \
    --report "$report" \
    --command "$command" || status=$?
if ((status == 0)) && [[ -s $kept ]]; then
    printf '\n' >>"$report"
    cat "$kept" >>"$report"
fi
if ((${#shm[@]})); then rm -rf "${shm[1]}"; fi
rm -rf "$work" "$kept"
exit $status
