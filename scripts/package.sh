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
    deb=$(cargo deb --no-build | tail -n 1)
else
    echo "cargo-deb is not installed: cargo install cargo-deb, then run $0 again" >&2
    echo "(or install without a package: cargo install --path . and copy target/assets by hand)" >&2
    exit 3
fi

# Verify the package: every asset of Cargo.toml's list is in it, and what it installs works
# (the binary, the man page rendering, the bash completion loading), unpacked in a temp dir.
echo "verifying $deb"
list=$(dpkg-deb -c "$deb" | awk '{print $NF}')
missing=0
for f in ./usr/bin/lookout ./usr/share/man/man1/lookout.1.gz \
    ./usr/share/bash-completion/completions/lookout ./usr/share/zsh/vendor-completions/_lookout \
    ./usr/share/fish/vendor_completions.d/lookout.fish ./usr/share/doc/lookout/sample.toml \
    ./usr/share/doc/lookout/README.md ./usr/share/doc/lookout/copyright \
    $(for t in themes/*.toml; do echo "./usr/share/lookout/themes/${t#themes/}"; done); do
    if ! printf '%s\n' "$list" | grep -qxF "$f"; then
        echo "missing from the package: $f" >&2
        missing=1
    fi
done
[ "$missing" = 0 ] || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
want="lookout $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
got=$("$tmp/usr/bin/lookout" --version)
[ "$got" = "$want" ] || { echo "usr/bin/lookout --version says '$got', not '$want'" >&2; exit 1; }
if command -v man >/dev/null 2>&1; then
    man -l "$tmp/usr/share/man/man1/lookout.1.gz" 2>/dev/null | grep -q '^NAME' ||
        { echo "the man page does not render" >&2; exit 1; }
fi
bash -c ". '$tmp/usr/share/bash-completion/completions/lookout' && complete -p lookout" >/dev/null ||
    { echo "the bash completion does not load" >&2; exit 1; }
echo "ok: $deb, $(stat -c %s "$deb") bytes, $(printf '%s\n' "$list" | grep -vc '/$') files" \
    "($got; man page renders; bash completion loads)"
