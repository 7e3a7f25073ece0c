#!/bin/sh
# Builds the release binary, writes the man page and shell completions it generates into
# target/assets, and makes the Debian package with cargo-deb (metadata in Cargo.toml).
# Without cargo-deb it stops after the assets and says how to get it.
set -eu
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin lookout
bin="$target/release/lookout"
mkdir -p target/assets
# cargo-deb reads asset paths relative to the crate: keep them under ./target.
[ "$target" = target ] || cp "$bin" target/release/lookout 2>/dev/null || { mkdir -p target/release; cp "$bin" target/release/lookout; }
"$bin" manpage > target/assets/lookout.1
"$bin" completions bash > target/assets/lookout.bash
"$bin" completions zsh > target/assets/_lookout
"$bin" completions fish > target/assets/lookout.fish
echo "assets in target/assets: $(ls target/assets | tr '\n' ' ')"
if cargo deb --version >/dev/null 2>&1; then
    cargo deb --no-build
else
    echo "cargo-deb is not installed: cargo install cargo-deb, then run $0 again" >&2
    echo "(or install without a package: cargo install --path . and copy target/assets by hand)" >&2
    exit 3
fi
