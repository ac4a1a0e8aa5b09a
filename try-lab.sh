#!/usr/bin/env bash
# Brings the seed's machines up as local containers and applies the seed's cluster to
# them: the lab's Kubernetes packages are the stand-in (no real ones can be fetched
# here), everything else is real. Ends with the cluster's status. `kubeha lab down`
# (as root, from this folder) removes the lab again.
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release -p kubeha
bash crates/k8s-standin/package-debs.sh target/lab-debs 1.31.0
debs=()
for deb in target/lab-debs/*_1.31.0-1.1_amd64.deb; do debs+=(--debs "$deb"); done
calico=../shared/fixtures/calico-v3.28.1.yaml

./target/release/kubeha lab up "${debs[@]}" --calico-manifest "$calico"
./target/release/kubeha apply -f .lab/cluster.yaml --yes
./target/release/kubeha status -f .lab/cluster.yaml
