#!/usr/bin/env bash
# The full test suite: unit tests, CLI tests, real-tool config checks and lab tests.
# Lab tests need Docker; with CI=true they never skip.
set -euo pipefail
cd "$(dirname "$0")"
cargo nextest run --workspace --no-fail-fast "$@"
