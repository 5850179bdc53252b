# The two entry points: `make run` (the whole stack locally) and `make test` (everything CI runs).
# Logic lives in the `devstack` crate and in scripts/; this file only strings them together.

CARGO ?= cargo

.PHONY: run test release deps

## run: start PostgreSQL, FerretDB and every service; Ctrl-C stops them all
run: deps
	$(CARGO) build --workspace --bins
	target/debug/devstack run

## test: formatting, lints and the whole test suite against real PostgreSQL and FerretDB
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build -p devstack --bin devstack
	scripts/check-prometheus-rules.sh
	target/debug/devstack test -- $(CARGO) test --workspace

## release: the optimized binaries of every service; deploy/Dockerfile runs exactly this command
## (a test checks that the two stay the same)
release:
	$(CARGO) build --release --locked --workspace --bins

deps:
	scripts/install-deps.sh
