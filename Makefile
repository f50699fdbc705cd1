# Convenience targets; the scripts are the source of truth (README).
.PHONY: run test test-vm conformance lint unit bench bench-net bench-pull
run:
	bash scripts/main-job.sh
test:
	bash scripts/test.sh
test-vm:
	cargo build --bin kinglet
	cargo test -p kinglet-tests --features vm --test vm_systemd -- --nocapture
conformance:
	bash scripts/conformance.sh
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --features kinglet-tests/vm -- -D warnings
unit:
	cargo test --workspace --lib
bench:
	bash scripts/bench.sh
bench-net:
	bash scripts/bench-net.sh
bench-pull:
	bash scripts/bench-pull.sh
