#!/usr/bin/env bash
# The one list of what kubeha's tests need on this machine; ./test.sh and .ci/run both
# call this script. It checks every prerequisite, installs the missing ones when it can
# (root and apt-get), and otherwise prints the exact command to run and exits 1.
#
#   scripts/prerequisites.sh            check, install what is missing when root with apt-get
#   scripts/prerequisites.sh --check    check only: print the install commands, install nothing
#   scripts/prerequisites.sh --ci       also the tools CI alone uses (cargo-deny)
set -euo pipefail

install=yes
ci=no
for arg in "$@"; do
    case "$arg" in
        --check) install=no ;;
        --ci) ci=yes ;;
        *) echo "usage: $0 [--check] [--ci]" >&2; exit 2 ;;
    esac
done

# command → Debian package. Why each is here:
#   haproxy, keepalived, containerd: the real programs that check kubeha's rendered configs;
#   debootstrap, dpkg-dev, apt-utils, gnupg: the lab's node image and its signed apt mirror;
#   etcd, etcdctl: the Kubernetes stand-in's store; ssh, ssh-keygen: kubeha's transport;
#   curl, ip: the lab tests probe the API and the lab network; git: build metadata.
packages=(
    haproxy:haproxy
    keepalived:keepalived
    containerd:containerd
    debootstrap:debootstrap
    etcd:etcd-server
    etcdctl:etcd-client
    ssh:openssh-client
    ssh-keygen:openssh-client
    dpkg-scanpackages:dpkg-dev
    apt-ftparchive:apt-utils
    gpg:gnupg
    curl:curl
    ip:iproute2
    git:git
)
# cargo subcommand → the command that installs it.
cargo_tools=("nextest:cargo install cargo-nextest --locked")
if [[ $ci == yes ]]; then
    cargo_tools+=("deny:cargo install cargo-deny --locked --no-default-features")
fi

# Daemons' tools live in sbin, which a normal user's PATH often lacks.
PATH="$PATH:/usr/sbin:/sbin"

missing_debs=()
for entry in "${packages[@]}"; do
    command -v "${entry%%:*}" >/dev/null || missing_debs+=("${entry#*:}")
done
# One package can provide several commands; name it once.
if ((${#missing_debs[@]})); then
    mapfile -t missing_debs < <(printf '%s\n' "${missing_debs[@]}" | sort -u)
fi
missing_tools=()
for entry in "${cargo_tools[@]}"; do
    command -v "cargo-${entry%%:*}" >/dev/null || missing_tools+=("${entry#*:}")
done

apt_command="apt-get install -y --no-install-recommends ${missing_debs[*]:-}"
failed=no
if ((${#missing_debs[@]})); then
    if [[ $install == yes && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "==> installing ${missing_debs[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086  # the list is words on purpose
        apt-get install -y -qq --no-install-recommends ${missing_debs[*]} >/dev/null
    else
        echo "missing: ${missing_debs[*]}; install with: sudo $apt_command" >&2
        failed=yes
    fi
fi
for cmd in "${missing_tools[@]}"; do
    if [[ $install == yes ]] && command -v cargo >/dev/null; then
        echo "==> $cmd" >&2
        $cmd
    else
        echo "missing: install with: $cmd" >&2
        failed=yes
    fi
done
if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    # Not installable from here: a Docker Engine needs a daemon, not just a package.
    echo "note: no Docker Engine is reachable: the lab tests will be skipped (CI=true fails them instead)" >&2
fi
[[ $failed == no ]]
