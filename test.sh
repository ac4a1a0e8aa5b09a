#!/usr/bin/env bash
# The full test suite: unit tests, CLI tests, real-tool config checks and lab tests.
# Checks the prerequisites first (scripts/prerequisites.sh installs what is missing when
# run as root with apt-get, otherwise prints the command). Lab tests need Docker; with
# CI=true they never skip.
set -euo pipefail
cd "$(dirname "$0")"
scripts/prerequisites.sh
cargo nextest run --workspace --no-fail-fast "$@"
