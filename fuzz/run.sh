#!/usr/bin/env bash
# Fuzzes the spec loader (parse + validate + render) for a bounded time. Not part of CI.
# Usage: fuzz/run.sh [SECONDS] (default 600). Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Crashes land in fuzz/artifacts/spec/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
corpus=corpus/spec
mkdir -p "$corpus"
# Seeds: the starter spec and both spec corpora.
cp ../crates/kubeha/src/spec/starter.yaml ../crates/kubeha/tests/hostile/complete.yml \
   ../crates/kubeha/tests/hostile/*.yaml ../crates/kubeha/tests/invalid/*.yaml "$corpus"/
cargo +nightly fuzz run spec "$corpus" -- \
  -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -dict=spec.dict
