#!/usr/bin/env bash
# Build the Debian and RPM packages of spack-installer, and check them.
#
#   bash packaging/build-packages.sh        # → target/debian/*.deb, target/generate-rpm/*.rpm
#
# Installs cargo-deb and cargo-generate-rpm when missing (`cargo install --locked`, about
# four minutes for both on two cores; CI reuses ~/.cargo/bin when it has it). Builds the release binary, makes
# the man pages and shell completions with it (`spack-installer man --dir`, `completions`),
# packs both packages with the same contents, then checks: `systemd-analyze verify` on the
# unit, and the .deb's file list and conffiles (tests/packaging.rs does the same from
# `cargo test` when SPACK_INSTALLER_DEB names the .deb).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

for tool in deb generate-rpm; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        echo "==> installing cargo-$tool"
        # Packing tools: built fast (no LTO, light optimisation), not for speed: about
        # 4 minutes for both on two cores instead of 5 or more.
        CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
            CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=0 \
            cargo install --locked "cargo-$tool"
    fi
done

echo "==> building the release binary"
cargo build --release --locked
bin=$target/release/spack-installer

echo "==> generating man pages and completions"
gen=$target/release/generated
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/completions"
"$bin" man --dir "$gen/man"
gzip -9n "$gen"/man/man1/*.1
"$bin" completions bash >"$gen/completions/spack-installer"
"$bin" completions zsh >"$gen/completions/_spack-installer"
"$bin" completions fish >"$gen/completions/spack-installer.fish"

echo "==> building the .deb"
deb=$(cargo deb --no-build --locked | tail -n 1)
echo "$deb"
echo "==> building the .rpm"
cargo generate-rpm
rpm=$(ls -t "$target"/generate-rpm/spack-installer-*.rpm | head -n 1)
echo "$rpm"

echo "==> verifying the unit"
# verify insists that ExecStart= exists; check a copy that points at the built binary.
verify=$(mktemp -d)
trap 'rm -rf "$verify"' EXIT
sed "s|/usr/bin/spack-installer|$(realpath "$bin")|" packaging/systemd/spack-installer.service \
    >"$verify/spack-installer.service"
systemd-analyze verify --man=no "$verify/spack-installer.service"

echo "==> checking the packages' contents"
SPACK_INSTALLER_DEB=$(realpath "$deb") SPACK_INSTALLER_RPM=$(realpath "$rpm") \
    cargo test --locked --test packaging -- --include-ignored
echo "==> ok: $deb $rpm"
