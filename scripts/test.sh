#!/usr/bin/env bash
# The whole test suite, as CI runs it (root; fresh Debian 12 with Rust installed):
# install packages, check formatting and lints, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --bin kinglet
cargo test --workspace --all-targets
