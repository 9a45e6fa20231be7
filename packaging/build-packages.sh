#!/usr/bin/env bash
# Build the Debian and RPM packages of spack-installer, and check them.
#
#   bash packaging/build-packages.sh        # → target/debian/*.deb, target/generate-rpm/*.rpm
#
# Installs cargo-deb and cargo-generate-rpm when missing (`cargo install --locked`, about
# four minutes for both on two cores; CI reuses ~/.cargo/bin when it has it). Builds the release binary, makes
# the man pages and shell completions with it (`spack-installer man --dir`, `completions`),
# packs both packages with the same contents, then checks: `systemd-analyze verify` on the
# units, and the packages' file lists and conffiles (tests/packaging.rs, its ignored
# tests, given the packages in SPACK_INSTALLER_DEB / SPACK_INSTALLER_RPM). The .rpm is
# read with the rpm tool: on a Debian without it, it is installed when run as root, and
# otherwise the .rpm is reported as built but not checked.
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
for u in spack-installer.service spack-installer-cleanup.service spack-installer-cleanup.timer; do
    sed "s|/usr/bin/spack-installer|$(realpath "$bin")|" "packaging/systemd/$u" >"$verify/$u"
done
systemd-analyze verify --man=no "$verify"/spack-installer*.service "$verify"/spack-installer-cleanup.timer

echo "==> checking the packages' contents"
# The .rpm's check reads it with `rpm -qlp`. A plain Debian has no rpm tool: install it
# when we can (root with apt-get), else check the .deb only and say so.
if ! command -v rpm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing rpm (to read the .rpm's file list)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm; } \
        || true
fi
if command -v rpm >/dev/null; then
    SPACK_INSTALLER_DEB=$(realpath "$deb") SPACK_INSTALLER_RPM=$(realpath "$rpm") \
        cargo test --locked --test packaging -- --include-ignored
    echo "==> ok: $deb $rpm"
else
    SPACK_INSTALLER_DEB=$(realpath "$deb") \
        cargo test --locked --test packaging -- --include-ignored --skip the_rpm_holds_the_same
    echo "==> ok: $deb; built but NOT checked: $rpm (no rpm tool: \`apt-get install rpm\` as root, then run this again)"
fi
