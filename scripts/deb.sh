#!/usr/bin/env bash
# Build the Debian package with cargo-deb: the release binary as /usr/bin/kinglet, the unit
# (ExecStart /usr/bin/kinglet daemon --config /etc/kinglet/config.toml), a commented default
# config, the man pages and the bash/zsh/fish completions; postinst makes
# /etc/kinglet/manifests (0700). Prints the path of the .deb.
#
# Usage: scripts/deb.sh [--no-build] [--dev]
#   --no-build  package the binary that is there
#   --dev       the debug binary (target/debug/kinglet) with fast compression: for the test
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || {
	echo "deb.sh: cargo-deb not found: cargo install cargo-deb" >&2
	exit 2
}
build=1
profile=(--profile release)
dir=release
for a in "$@"; do
	case "$a" in
	--no-build) build=0 ;;
	--dev) profile=(--profile dev --fast) dir=debug ;;
	*) echo "usage: deb.sh [--no-build] [--dev]" >&2; exit 2 ;;
	esac
done
if [ "$build" = 1 ]; then
	cargo build "${profile[@]:0:2}" --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
fi
bin=target/$dir/kinglet
out=target/deb-assets
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" man "$out/man" >/dev/null
"$bin" completion bash >"$out/completions/kinglet.bash"
"$bin" completion zsh >"$out/completions/_kinglet"
"$bin" completion fish >"$out/completions/kinglet.fish"
sed -e 's|^ExecStart=/usr/local/bin/kinglet daemon$|ExecStart=/usr/bin/kinglet daemon --config /etc/kinglet/config.toml|' \
	systemd/kinglet.service >"$out/kinglet.service"
grep -q '^ExecStart=/usr/bin/kinglet ' "$out/kinglet.service" || {
	echo "deb.sh: could not rewrite ExecStart in systemd/kinglet.service" >&2
	exit 1
}
cargo deb -p kinglet --no-build --no-strip "${profile[@]}" --output target/debian/ 2>&1 | tail -1
