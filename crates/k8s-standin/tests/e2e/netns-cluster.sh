#!/bin/bash
# End-to-end check of the stand-ins on one machine: each "host" is a network +
# mount + UTS namespace (own IP, own /etc/kubernetes, /var/lib/{kubelet,etcd},
# own fake containerd socket), HAProxy in front of the control planes. Runs the
# seed's manual steps with plain shell: kubeadm init, two control-plane joins,
# worker joins, Calico (checking the add-ons' Pods run), a drain, then stops
# cp1 and checks the API still answers through the load balancer with its data. Needs root, iproute2, util-linux,
# haproxy, etcd-server, python3. Usage: netns-cluster.sh [BIN_DIR]  (default target/debug)
# With UPGRADE_BIN=DIR (binaries built with STANDIN_K8S_VERSION=v1.32.0) it also
# upgrades the cluster (kubeadm upgrade apply/node, then the kubelets) first.
set -euo pipefail

BIN=$(cd "${1:-$(dirname "$0")/../../../../target/debug}" && pwd)
NET=10.200.0
LB=$NET.1
ROOT=$(mktemp -d /tmp/standin-e2e.XXXX)
PIDS=()
CALICO=${CALICO:-/work/shared/fixtures/calico-v3.28.1.yaml}
KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
TOKEN=abcdef.0123456789abcdef

log() { echo "=== $*"; }
cleanup() {
  set +e
  for n in cp1 cp2 cp3 w1 w2 w3; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
    ip link del "v-$n" 2>/dev/null   # the namespace may outlive its name while zombies hold it
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  iptables -D FORWARD -i br-standin -o br-standin -j ACCEPT 2>/dev/null
  ip link del br-standin 2>/dev/null
  rm -rf /usr/lib/k8s-standin "$ROOT"
}
trap cleanup EXIT

mkdir -p /usr/lib/k8s-standin/bin
for c in kube-apiserver kube-controller-manager kube-scheduler; do cp "$BIN/$c" /usr/lib/k8s-standin/bin/; done

ip link add br-standin type bridge
ip addr add $LB/24 dev br-standin
ip link set br-standin up
# Hosts talk to each other across the bridge; Docker's FORWARD policy is DROP.
iptables -I FORWARD -i br-standin -o br-standin -j ACCEPT

# host NAME IP: namespaces, private dirs, fake CRI socket, kubelet under a restart loop.
host() {
  local n=$1 ip=$2 d=$ROOT/$1
  ip netns add "$n"
  ip link add "v-$n" type veth peer name eth0 netns "$n"
  ip link set "v-$n" master br-standin up
  ip netns exec "$n" ip addr add "$ip/24" dev eth0
  ip netns exec "$n" ip link set eth0 up
  ip netns exec "$n" ip link set lo up
  ip netns exec "$n" ip route add default via $LB
  # Node preparation the seed does (kubeadm's preflight reads both files).
  ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$n" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  mkdir -p "$d"/{kubernetes,kubelet,etcd,run,cni,logs,containerd,containerd-etc,kubeadm}
  ln -s "$BIN/kubelet" "$d/kubelet-bin"   # the "installed package"; switched on upgrade
  printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n' >"$d/containerd-etc/config.toml"
  ip netns exec "$n" unshare --mount --uts --propagation private bash -c "
    hostname $n
    for m in kubernetes:/etc/kubernetes kubelet:/var/lib/kubelet etcd:/var/lib/etcd run:/run/kubelet-standin cni:/etc/cni/net.d logs:/var/log/pods containerd:/var/run/containerd containerd-etc:/etc/containerd kubeadm:/etc/kubeadm; do
      mkdir -p \${m#*:}; mount --bind $d/\${m%%:*} \${m#*:}
    done
    python3 -c 'import socket,os
s=socket.socket(socket.AF_UNIX); s.bind(\"/var/run/containerd/containerd.sock\"); s.listen(50)
while True: s.accept()[0].close()' &
    export PATH=$BIN:\$PATH
    while true; do
      set -a; . /var/lib/kubelet/kubeadm-flags.env 2>/dev/null; set +a
      $d/kubelet-bin --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \$KUBELET_KUBEADM_ARGS >>$d/kubelet.log 2>&1
      sleep 2
    done" &
  PIDS+=($!)
}

# on NAME CMD...: runs in the host's namespaces.
on() {
  local n=$1; shift
  local pid
  pid=$(ip netns pids "$n" | while read -r p; do [ "$(readlink /proc/$p/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] && echo "$p" && break; done)
  nsenter --target "$pid" --mount --uts --net env PATH="$BIN:$PATH" "$@"
}

host cp1 $NET.11; host cp2 $NET.12; host cp3 $NET.13; host w1 $NET.21; host w2 $NET.22; host w3 $NET.23
# w3's containerd keeps runc on cgroupfs while the kubelet uses systemd.
sed -i 's/SystemdCgroup = true/SystemdCgroup = false/' "$ROOT/w3/containerd-etc/config.toml"
sleep 2

cat >"$ROOT/haproxy.cfg" <<HAP
global
  daemon
  pidfile $ROOT/haproxy.pid
defaults
  mode tcp
  timeout connect 5s
  timeout client 35s
  timeout server 35s
  timeout check 10s
  option redispatch
  retries 1
frontend apiserver
  bind $LB:6443
  default_backend apiserver
backend apiserver
  option httpchk
  http-check connect ssl
  http-check send meth GET uri /healthz
  http-check expect status 200
  balance roundrobin
  server cp1 $NET.11:6443 check verify none inter 1s fall 2 rise 1
  server cp2 $NET.12:6443 check verify none inter 1s fall 2 rise 1
  server cp3 $NET.13:6443 check verify none inter 1s fall 2 rise 1
HAP
haproxy -f "$ROOT/haproxy.cfg"
PIDS+=("$(cat "$ROOT/haproxy.pid")")

cat >"$ROOT/cp1/kubeadm/init.yaml" <<CFG
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens: [{token: $TOKEN, ttl: 24h0m0s}]
certificateKey: $KEY
nodeRegistration: {name: cp1}
localAPIEndpoint: {advertiseAddress: $NET.11, bindPort: 6443}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.31.0
controlPlaneEndpoint: "$LB:6443"
networking: {podSubnet: 192.168.0.0/16}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
CFG
log "kubeadm init on cp1"
on cp1 kubeadm init --config /etc/kubeadm/init.yaml --upload-certs | tail -3
HASH=$(on cp1 sh -c 'openssl x509 -pubkey -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der | openssl dgst -sha256' | sed 's/^.* //')

join_cfg() {
  local n=$1 ip=$2 cp=$3
  {
    echo "apiVersion: kubeadm.k8s.io/v1beta4"
    echo "kind: JoinConfiguration"
    echo "discovery: {bootstrapToken: {token: $TOKEN, apiServerEndpoint: \"$LB:6443\", caCertHashes: [\"sha256:$HASH\"]}}"
    echo "nodeRegistration: {name: $n}"
    if [ "$cp" = yes ]; then
      echo "controlPlane: {localAPIEndpoint: {advertiseAddress: $ip, bindPort: 6443}, certificateKey: $KEY}"
    fi
  } >"$ROOT/$n/kubeadm/join.yaml"
}
log "a join pinning the wrong CA hash fails"
join_cfg cp2 $NET.12 yes
sed -i "s/sha256:$HASH/sha256:$(printf '0%.0s' $(seq 64))/" "$ROOT/cp2/kubeadm/join.yaml"
if out=$(on cp2 kubeadm join --config /etc/kubeadm/join.yaml 2>&1); then echo "FAIL: wrong hash accepted"; exit 1; fi
echo "$out" | grep -F "none of the public keys \"sha256:$HASH\" are pinned" || { echo "FAIL: $out"; exit 1; }
for n in cp2:$NET.12 cp3:$NET.13; do
  join_cfg "${n%%:*}" "${n#*:}" yes
  log "kubeadm join (control plane) on ${n%%:*}"
  on "${n%%:*}" kubeadm join --config /etc/kubeadm/join.yaml | tail -2
done
for w in w1 w2 w3; do
  join_cfg $w "" no
  log "kubeadm join (worker) on $w"
  on $w kubeadm join --config /etc/kubeadm/join.yaml | tail -2
done

K="on cp1 kubectl --kubeconfig /etc/kubernetes/admin.conf"
log "Calico"
$K apply -f - <"$CALICO" >/dev/null
for i in $(seq 1 60); do
  ready=$($K get nodes --no-headers | awk '$2 == "Ready"' | wc -l)
  [ "$ready" = 5 ] && break
  sleep 2
done
$K get nodes
[ "$ready" = 5 ] || { echo "FAIL: $ready/5 nodes Ready"; exit 1; }
[ "$($K get node w3 --no-headers | awk '{print $2}')" = NotReady ] || { echo "FAIL: w3 with a cgroup-driver mismatch is Ready"; exit 1; }
on cp1 etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt --key /etc/kubernetes/pki/etcd/server.key member list -w table
$K create configmap survivor --from-literal=k=v >/dev/null

log "add-ons run: calico-node and kube-proxy on every node, CoreDNS 2/2, calico-kube-controllers"
for i in $(seq 1 60); do
  [ "$($K -n kube-system get deploy coredns --no-headers | awk '{print $2}')" = 2/2 ] && break
  sleep 2
done
$K get pods -A -o wide
$K -n kube-system get deploy,ds
running_on() { $K -n kube-system get pods -l "k8s-app=$1" --no-headers -o wide | awk '$3 == "Running" {print $7}' | sort | tr '\n' ' '; }
[ "$($K -n kube-system get deploy coredns --no-headers | awk '{print $2}')" = 2/2 ] || { echo "FAIL: coredns not 2/2"; exit 1; }
[ "$(running_on calico-node)" = "cp1 cp2 cp3 w1 w2 " ] || { echo "FAIL: calico-node Running on: $(running_on calico-node)"; exit 1; }
[ "$(running_on kube-proxy)" = "cp1 cp2 cp3 w1 w2 " ] || { echo "FAIL: kube-proxy Running on: $(running_on kube-proxy)"; exit 1; }
[ -n "$(running_on calico-kube-controllers)" ] || { echo "FAIL: calico-kube-controllers not Running"; exit 1; }
# w3's sandboxes fail (cgroup driver): its calico-node Pod is bound but never starts.
$K -n kube-system get pods -l k8s-app=calico-node --no-headers -o wide | awk '$7 == "w3" {print $3}' | grep -qx ContainerCreating || { echo "FAIL: calico-node on w3 should be ContainerCreating"; exit 1; }

log "a Deployment survives kubectl drain of w1 (DaemonSets ignored), then w1 takes Pods again"
$K create deployment web --image=nginx:1.27 --replicas=2 >/dev/null
$K rollout status deployment/web --timeout=60s
$K drain w1 --ignore-daemonsets --timeout=60s
$K rollout status deployment/web --timeout=60s
[ -z "$($K get pods -l app=web --no-headers -o wide | awk '$7 == "w1"')" ] || { echo "FAIL: web Pods left on drained w1"; exit 1; }
$K uncordon w1
$K delete deployment web >/dev/null

log "kubeadm reset on cp3 removes its etcd member; cp3 then joins again"
on cp3 kubeadm reset -f | grep -E "etcd member|Deleting files" || true
# What `systemctl stop kubelet` does on a real host (no systemd in these namespaces).
for p in $(ip netns pids cp3); do [ "$(readlink /proc/$p/exe)" = "$(readlink -f "$ROOT/cp3/kubelet-bin")" ] && kill "$p"; done
members=$(on cp2 etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt --key /etc/kubernetes/pki/etcd/server.key member list | wc -l)
[ "$members" = 2 ] || { echo "FAIL: $members etcd members after reset"; exit 1; }
$K delete node cp3 >/dev/null
join_cfg cp3 $NET.13 yes
on cp3 kubeadm join --config /etc/kubeadm/join.yaml | tail -1
for i in $(seq 1 30); do [ "$($K get node cp3 --no-headers 2>/dev/null | awk '{print $2}')" = Ready ] && break; sleep 2; done
members=$(on cp2 etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt --key /etc/kubernetes/pki/etcd/server.key member list | grep -c started)
[ "$members" = 3 ] || { echo "FAIL: $members started etcd members after rejoin"; exit 1; }

if [ -n "${UPGRADE_BIN:-}" ]; then
  log "upgrade to $("$UPGRADE_BIN/kubeadm" version -o short): apply on cp1, node on the others, then kubelets"
  on cp1 "$UPGRADE_BIN/kubeadm" upgrade apply v1.32.0 -y | tail -3
  for n in cp2 cp3 w1 w2; do on $n "$UPGRADE_BIN/kubeadm" upgrade node | tail -1; done
  for n in cp1 cp2 cp3 w1 w2; do
    ln -sfn "$UPGRADE_BIN/kubelet" "$ROOT/$n/kubelet-bin"
    for p in $(ip netns pids $n); do [ "$(readlink /proc/$p/exe)" = "$BIN/kubelet" ] && kill "$p"; done
  done
  for i in $(seq 1 30); do
    [ "$($K get nodes --no-headers | grep -v w3 | awk '$5 == "v1.32.0" && $2 == "Ready"' | wc -l)" = 5 ] && break
    sleep 2
  done
  $K get nodes
  [ "$($K get nodes --no-headers | grep -v w3 | awk '$5 == "v1.32.0"' | wc -l)" = 5 ] || { echo "FAIL: kubelets not upgraded"; exit 1; }
  for n in cp1 cp2 cp3; do
    v=$(on $n curl -sk https://127.0.0.1:6443/version | python3 -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])')
    [ "$v" = v1.32.0 ] || { echo "FAIL: $n apiserver reports $v"; exit 1; }
  done
  [ "$(on cp2 "$UPGRADE_BIN/kubeadm" upgrade plan | tail -1)" = "Awesome, you're up-to-date! Enjoy!" ] || { echo "FAIL: upgrade plan"; exit 1; }
fi

log "stopping cp1 (every process in its namespaces)"
for p in $(ip netns pids cp1); do kill -9 "$p" 2>/dev/null || true; done
sleep 4
K2="on cp2 kubectl --kubeconfig /etc/kubernetes/admin.conf"
$K2 get configmap survivor -o jsonpath='{.data.k}{"\n"}'
[ "$($K2 get configmap survivor -o jsonpath='{.data.k}')" = v ] || { echo "FAIL: data lost"; exit 1; }
log "waiting for cp1 to go NotReady (node lifecycle grace 40s)"
for i in $(seq 1 40); do
  st=$($K2 get node cp1 --no-headers | awk '{print $2}')
  [ "$st" != Ready ] && break
  sleep 2
done
$K2 get nodes
[ "$st" != Ready ] || { echo "FAIL: cp1 still Ready"; exit 1; }
echo "1 passed, 0 failed"
