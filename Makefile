# The entry points: `make run` (the whole stack locally), `make test` (everything CI runs) and
# `make chaos` (the pipeline under faults) and `make bench` (micro benchmarks and the pipeline
# benchmark, written to docs/benchmarks.md).
# Logic lives in the `devstack` crate and in scripts/; this file only strings them together.

CARGO ?= cargo

.PHONY: run test release chaos bench deps

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
	target/debug/devstack test -- $(CARGO) test --workspace --no-fail-fast
	$(CARGO) build --workspace --bins
	target/debug/chaos --seconds 30 --faults 5

## chaos: the pipeline under load while a seeded schedule kills and restarts its parts, then
## proof that nothing was lost (CHAOS_SEED, CHAOS_SECONDS, CHAOS_FAULTS, CHAOS_RATE)
chaos: deps
	$(CARGO) build --workspace --bins
	target/debug/chaos

## release: the optimized binaries of every service; deploy/Dockerfile runs exactly this command
## (a test checks that the two stay the same)
release:
	$(CARGO) build --release --locked --workspace --bins

## bench: criterion micro benchmarks, then the pipeline benchmark on release builds; the latter
## writes docs/benchmarks.md and docs/benchmarks.json (sizes: BENCH_ARGS, see pipeline-bench --help)
bench: deps
	$(CARGO) bench -p cdc-daemon --bench steps
	$(CARGO) bench -p ingest-api --bench validation
	$(CARGO) build --release -p cdc-daemon -p ingest-api -p reports-api -p pipeline-bench
	target/release/pipeline-bench $(BENCH_ARGS)

deps:
	scripts/install-deps.sh
