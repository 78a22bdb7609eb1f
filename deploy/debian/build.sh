#!/usr/bin/env bash
# Builds the Debian package target/debian/haraft_VERSION-1_ARCH.deb from the
# workspace: the release binaries, then the man pages and shell completions
# generated from the binaries' own argument definitions (clap_mangen,
# clap_complete) into target/release/package/, then cargo-deb with the
# metadata in crates/agent/Cargo.toml. Needs cargo-deb
# (cargo install cargo-deb --locked).
#
# HARAFT_DEB_PROFILE=dev packages the debug binaries instead (CI: the
# package test checks the packaging, and the workspace's debug build is
# there already; a release build would add minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "deploy/debian/build.sh: cargo-deb is not installed: cargo install cargo-deb --locked" >&2
    exit 2
fi
profile="${HARAFT_DEB_PROFILE:-release}"
case "$profile" in
    release) dir=release ;;
    dev) dir=debug ;;
    *) echo "deploy/debian/build.sh: HARAFT_DEB_PROFILE must be release or dev, got $profile" >&2; exit 2 ;;
esac
cargo build --profile "$profile" --locked -p haraft-agent -p haraft-ctl
# cargo-deb maps target/release/ to the real target directory and profile;
# so does this.
release="${CARGO_TARGET_DIR:-target}/$dir"
out="$release/package"
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$release/haraft" --man-dir "$out/man" >/dev/null
"$release/haraftctl" man --dir "$out/man" >/dev/null
# Debian ships man pages compressed; -n keeps the archive reproducible.
gzip -9n "$out"/man/*.1
for shell in bash zsh fish elvish powershell; do
    "$release/haraftctl" completions "$shell" >"$out/completions/haraftctl.$shell"
done
cargo deb -p haraft-agent --no-build --locked --profile "$profile"
