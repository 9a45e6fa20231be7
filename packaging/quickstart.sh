#!/usr/bin/env bash
# The whole life of a queue on a private spool in the working tree: build, init, submit,
# look with ls, run the worker until the queue is idle, look again. Uses a real Spack
# when one is on PATH (or SPACK is set), else the worker's dry-run mode.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/spack-installer"
export SPACK_INSTALLER_SPOOL="$PWD/quickstart-spool"
mkdir -p target
export SPACK_INSTALLER_CONFIG="$PWD/target/quickstart-config.toml"
if [ -t 1 ]; then b=$'\033[1m' n=$'\033[0m'; else b='' n=''; fi
say() { printf '\n%s$ %s%s\n' "$b" "$*" "$n"; }
run() { say "$*"; "$@"; }

spack_bin="${SPACK:-$(command -v spack || true)}"
if [ -n "$spack_bin" ]; then
  printf 'spack = "%s"\n' "$spack_bin" > "$SPACK_INSTALLER_CONFIG"
  mode=()
  echo "Using Spack at $spack_bin"
else
  : > "$SPACK_INSTALLER_CONFIG"
  mode=(--dry-run)
  echo "No spack on PATH: the worker runs in dry-run mode (jobs move through the states; Spack is not run)."
fi

rm -rf "$SPACK_INSTALLER_SPOOL"
run "$bin" init
run "$bin" submit zlib
run "$bin" submit -p high "hdf5@1.14 +mpi" -d zlib
run "$bin" submit -- "-j64 zlib" || true
say "printf 'spec = \"cmake\"\\npriorty = \"high\"\\n' > incoming/.typo.toml && mv incoming/.typo.toml incoming/typo.toml"
printf 'spec = "cmake"\npriorty = "high"\n' > "$SPACK_INSTALLER_SPOOL/incoming/.typo.toml"
mv "$SPACK_INSTALLER_SPOOL/incoming/.typo.toml" "$SPACK_INSTALLER_SPOOL/incoming/typo.toml"
run ls "$SPACK_INSTALLER_SPOOL/incoming"
run "$bin" status
run "$bin" worker run --until-idle "${mode[@]}"
run ls "$SPACK_INSTALLER_SPOOL"/{pending,running,done,failed}
run cat "$SPACK_INSTALLER_SPOOL/done/000002-hdf5.toml"
run "$bin" status --all
echo
echo "The spool is in $SPACK_INSTALLER_SPOOL: look around with ls and cat."
