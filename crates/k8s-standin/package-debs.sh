#!/bin/bash
# Builds the lab's Kubernetes stand-in packages:
#   package-debs.sh OUTDIR [VERSION...]      (default versions: 1.31.0 1.32.0)
# writes OUTDIR/{kubeadm,kubelet,kubectl}_<VERSION>-1.1_amd64.deb for each
# version. kubectl is Debian's real kubectl (package kubernetes-client),
# repackaged; set KUBERNETES_CLIENT_DEB=/path/to/kubernetes-client_*.deb to
# avoid `apt-get download`. Needs cargo, dpkg-deb (dpkg-dev) and apt.
set -euo pipefail

out=${1:?usage: package-debs.sh OUTDIR [VERSION...]}
shift
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(1.31.0 1.32.0)
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

client_deb=${KUBERNETES_CLIENT_DEB:-}
if [ -z "$client_deb" ]; then
  (cd "$work" && apt-get download kubernetes-client >/dev/null 2>&1) || {
    echo "package-debs.sh: cannot fetch Debian's kubernetes-client (run apt-get update, or set KUBERNETES_CLIENT_DEB)" >&2
    exit 1
  }
  client_deb=$(ls "$work"/kubernetes-client_*.deb)
fi
mkdir -p "$work/kc"
dpkg-deb -x "$client_deb" "$work/kc"
kubectl_upstream=$(dpkg-deb -f "$client_deb" Version)

# deb NAME VERSION ROOTDIR DEPENDS DESCRIPTION-LINE [EXTRA-CONTROL]
deb() {
  local name=$1 version=$2 root=$3 depends=$4 summary=$5 extra=${6:-}
  mkdir -p "$root/DEBIAN"
  {
    echo "Package: $name"
    echo "Version: $version-1.1"
    echo "Architecture: amd64"
    echo "Maintainer: kubeha lab <lab@kubeha.invalid>"
    [ -n "$depends" ] && echo "Depends: $depends"
    [ -n "$extra" ] && echo "$extra"
    echo "Section: admin"
    echo "Priority: optional"
    echo "Homepage: https://kubernetes.io"
    echo "Description: $summary (kubeha lab stand-in)"
    echo " Lab-only stand-in built from kubeha's k8s-standin crate. It behaves like"
    echo " Kubernetes v$version on every surface kubeha uses, on a real etcd, but runs"
    echo " no containers. Never install it outside the kubeha lab."
  } >"$root/DEBIAN/control"
  dpkg-deb --root-owner-group -Zxz --build "$root" "$out/${name}_${version}-1.1_amd64.deb" >/dev/null
  echo "$out/${name}_${version}-1.1_amd64.deb"
}

# Each version's binaries differ only by the version compiled in: a version whose
# packages were built from these very sources is not built again (the stamp holds a
# hash of the stand-in's sources, the lock file and the packaging inputs; not its docs).
sources_hash=$(cd "$here/../.." && {
  find crates/k8s-standin/src crates/k8s-standin/packaging crates/k8s-standin/Cargo.toml \
    crates/k8s-standin/package-debs.sh -type f -print0 | sort -z | xargs -0 sha256sum
  sha256sum Cargo.lock Cargo.toml
  [ -z "${KUBERNETES_CLIENT_DEB:-}" ] || sha256sum "$KUBERNETES_CLIENT_DEB"
} | sha256sum | cut -d' ' -f1)

for v in "${versions[@]}"; do
  stamp="$out/.built-$v"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$sources_hash" ] &&
    [ -f "$out/kubeadm_${v}-1.1_amd64.deb" ] && [ -f "$out/kubelet_${v}-1.1_amd64.deb" ] &&
    [ -f "$out/kubectl_${v}-1.1_amd64.deb" ]; then
    for name in kubeadm kubelet kubectl; do echo "$out/${name}_${v}-1.1_amd64.deb"; done
    continue
  fi
  rm -f "$stamp"
  STANDIN_K8S_VERSION="v$v" cargo build --release --quiet -p k8s-standin --bins --manifest-path "$here/Cargo.toml"
  target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$here/Cargo.toml" | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  bin="$target/release"

  r="$work/kubeadm-$v"
  install -D -m 0755 "$bin/kubeadm" "$r/usr/bin/kubeadm"
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    install -D -m 0755 "$bin/$c" "$r/usr/lib/k8s-standin/bin/$c"
  done
  install -D -m 0644 "$here/packaging/10-kubeadm.conf" "$r/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"
  install -D -m 0755 /dev/stdin "$r/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
# The stand-in's etcd "image" is Debian's etcd binary, run by the kubelet from
# /etc/kubernetes/manifests/etcd.yaml. Debian's own etcd.service would hold
# port 2379 and /var/lib/etcd, which kubeadm's preflight rejects.
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl stop etcd.service >/dev/null 2>&1 || true
  systemctl disable etcd.service >/dev/null 2>&1 || true
  systemctl mask etcd.service >/dev/null 2>&1 || true
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = configure ] && [ ! -e /etc/kubernetes/manifests/etcd.yaml ] && [ -d /var/lib/etcd/default ]; then
  rm -rf /var/lib/etcd/default
fi
exit 0
POSTINST
  deb kubeadm "$v" "$r" "etcd-server" "Command-line utility for administering a Kubernetes cluster"

  r="$work/kubelet-$v"
  install -D -m 0755 "$bin/kubelet" "$r/usr/bin/kubelet"
  install -D -m 0644 "$here/packaging/kubelet.service" "$r/usr/lib/systemd/system/kubelet.service"
  install -D -m 0755 /dev/stdin "$r/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  if [ "$1" = configure ] && [ -z "$2" ]; then
    systemctl enable kubelet.service >/dev/null 2>&1 || true
  fi
  # Like the real package: (re)start; it crash-loops until kubeadm writes its config.
  systemctl restart kubelet.service >/dev/null 2>&1 || true
fi
exit 0
POSTINST
  install -D -m 0755 /dev/stdin "$r/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop kubelet.service >/dev/null 2>&1 || true
  systemctl disable kubelet.service >/dev/null 2>&1 || true
fi
exit 0
PRERM
  deb kubelet "$v" "$r" "iptables, iproute2, mount, util-linux, ethtool, conntrack" "Node agent for Kubernetes clusters"

  r="$work/kubectl-$v"
  install -D -m 0755 "$work/kc/usr/bin/kubectl" "$r/usr/bin/kubectl"
  deb kubectl "$v" "$r" "" "Command-line utility for interacting with a Kubernetes cluster (Debian kubectl $kubectl_upstream)" \
    "Conflicts: kubernetes-client
Replaces: kubernetes-client
Provides: kubernetes-client"
  echo "$sources_hash" >"$stamp"
done
