#!/usr/bin/env bash
# Checks the Prometheus alert rules (syntax, `promtool check rules`) and runs their unit tests
# (`promtool test rules`). Run by `make test`; Debian's `prometheus` package provides promtool
# (scripts/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.test.yml
