# Convenience targets; the scripts are the source of truth (README).
.PHONY: run test test-vm conformance lint unit bench bench-net bench-pull bench-cri bench-cli install uninstall man deb fuzz
run:
	bash scripts/main-job.sh
test:
	bash scripts/test.sh
test-vm:
	cargo build --bin kinglet --bin kinglet-shim --bin kinglet-pod-init
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
bench-cli:
	bash scripts/bench-cli.sh
bench-cri:
	bash scripts/bench-cri.sh
# Debian package (cargo-deb): target/debian/kinglet_*.deb.
deb:
	bash scripts/deb.sh
# Man pages (kinglet.1, kinglet-VERB.1) from the command line's own help.
man:
	cargo build --release --bin kinglet
	target/release/kinglet man target/man
# Every fuzz target for FUZZ_SECONDS each (nightly + cargo-fuzz; scripts/fuzz.sh).
FUZZ_SECONDS ?= 60
fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS)
# Install the binary, its man pages and bash completion, the systemd unit and
# /etc/kinglet/manifests (0700); `systemctl enable
# --now kinglet` starts it. `make uninstall` stops it, runs `kinglet reset` and removes both.
PREFIX ?= /usr/local
install: man
	cargo build --release --bin kinglet-shim --bin kinglet-pod-init
	install -D -m 0755 target/release/kinglet $(DESTDIR)$(PREFIX)/bin/kinglet
	install -D -m 0755 target/release/kinglet-shim $(DESTDIR)$(PREFIX)/bin/kinglet-shim
	install -D -m 0755 target/release/kinglet-pod-init $(DESTDIR)$(PREFIX)/bin/kinglet-pod-init
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 target/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	target/release/kinglet completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/kinglet
	install -d $(DESTDIR)/etc/systemd/system
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|g' systemd/kinglet.service > $(DESTDIR)/etc/systemd/system/kinglet.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/kinglet.service
	install -D -m 0644 systemd/kinglet.socket $(DESTDIR)/etc/systemd/system/kinglet.socket
	install -d -m 0700 $(DESTDIR)/etc/kinglet/manifests
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
uninstall:
	-systemctl disable --now kinglet
	$(PREFIX)/bin/kinglet reset --yes
	-systemctl disable --now kinglet.socket
	rm -f $(PREFIX)/bin/kinglet $(PREFIX)/bin/kinglet-shim $(PREFIX)/bin/kinglet-pod-init /etc/systemd/system/kinglet.service /etc/systemd/system/kinglet.socket
	rm -f $(PREFIX)/share/man/man1/kinglet.1 $(PREFIX)/share/man/man1/kinglet-*.1
	rm -f $(PREFIX)/share/bash-completion/completions/kinglet
	-systemctl daemon-reload
