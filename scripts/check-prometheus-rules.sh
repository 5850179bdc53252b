#!/usr/bin/env bash
# Checks the Prometheus alert rules (syntax, `promtool check rules`), runs their unit tests
# (`promtool test rules`) and checks the compose deployment's Prometheus configuration. Run by `make test`; Debian's `prometheus` package provides promtool
# (scripts/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.test.yml
promtool check config --syntax-only deploy/prometheus/prometheus.yml
