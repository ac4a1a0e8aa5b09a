#!/usr/bin/env bash
# kubeha's benchmark (not part of test.sh or CI's test command): builds the release binary,
# then on fresh labs measures kubeha against the Ansible peer in bench/ansible, the scale
# series and the failover drills. Each lab run takes /tmp/kubeha-lab.lock. Run as root (Docker,
# /etc/hosts) from anywhere:
#   bench/run.sh [--parts seed,ansible,scale,drills] [--scale "2 10 25 50"] [--runs 5]
# Results: bench/results/<UTC time>/results.{md,json} (and the same under bench/results/latest).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p kubeha
bash crates/k8s-standin/package-debs.sh target/bench/debs 1.31.0 >/dev/null
debs=(target/bench/debs/*_1.31.0-1.1_amd64.deb)

# The peer: ansible-core from PyPI in a venv of its own.
if [ ! -x bench/.venv/bin/ansible-playbook ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q 'ansible-core>=2.16,<2.18'
fi

out=bench/results/$(date -u +%Y%m%dT%H%M%SZ)
python3 bench/bench.py --out "$out" --debs "${debs[@]}" "$@"
rm -rf bench/results/latest
cp -r "$out" bench/results/latest
