#!/usr/bin/env bash
# Brings the seed's machines up as local containers and applies the seed's cluster to
# them: the lab's Kubernetes packages are the stand-in (no real ones can be fetched
# here), everything else is real. Ends with the cluster's status and what to try next.
#
#   ./try-lab.sh [CALICO_MANIFEST]    (or KUBEHA_CALICO_MANIFEST=...; see scripts/calico-manifest.sh)
set -euo pipefail
# Paths the user gave are relative to where they ran this, not to the repository.
absolute() { [[ -z "$1" || "$1" == /* ]] && echo "$1" || echo "$PWD/$1"; }
manifest="$(absolute "${1:-}")"
KUBEHA_CALICO_MANIFEST="$(absolute "${KUBEHA_CALICO_MANIFEST:-}")"
cd "$(dirname "$0")"
source scripts/calico-manifest.sh

# Before the long build: a missing manifest or tool is reported at once.
calico="$(calico_manifest "$manifest")"
scripts/prerequisites.sh

cargo build --release -p kubeha
bash crates/k8s-standin/package-debs.sh target/lab-debs 1.31.0
debs=()
for deb in target/lab-debs/*_1.31.0-1.1_amd64.deb; do debs+=(--debs "$deb"); done

kubeha=./target/release/kubeha
"$kubeha" lab up "${debs[@]}" --calico-manifest "$calico"
"$kubeha" apply -f .lab/cluster.yaml --yes
"$kubeha" status -f .lab/cluster.yaml
echo "Next: kubectl --kubeconfig .lab/kubeha.kubeconfig get nodes; $kubeha verify -f .lab/cluster.yaml --disruptive; $kubeha lab down"
