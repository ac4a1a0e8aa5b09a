#!/bin/bash
# Builds the lab's two images from a Debian rootfs made with debootstrap (no registry needed):
#   NODE_TAG   - a fresh-cloud-machine-like host: systemd, sshd, sudo, python3, nothing Kubernetes;
#   MIRROR_TAG - the same rootfs plus apt-utils, a per-cache signing key and the .debs kubeha
#                installs (MIRROR_PACKAGES and every dependency the node image lacks).
# Run by kubeha-lab as root; its inputs come from the environment and are part of the image hash.
set -euo pipefail

: "${NODE_TAG:?}" "${MIRROR_TAG:?}" "${NODE_PACKAGES:?}" "${MIRROR_PACKAGES:?}"
: "${OPTIONAL_MIRROR_PACKAGES:=}" "${SUITE:=bookworm}" "${DEBIAN_URL:=http://deb.debian.org/debian}"
: "${CACHE_DIR:=/var/cache/kubeha-lab}"

log() { printf 'kubeha-lab build: %s\n' "$*" >&2; }

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# A short path: gpg-agent's socket path must stay under 108 bytes.
work=$(mktemp -d /tmp/khl.XXXXXX)
root=$work/root
cleanup() {
    umount -l "$root/proc" 2>/dev/null || true
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir -p "$CACHE_DIR/debootstrap"

log "debootstrap $SUITE (minbase + node packages)"
debootstrap --variant=minbase --include="${NODE_PACKAGES// /,}" \
    --cache-dir="$CACHE_DIR/debootstrap" "$SUITE" "$root" "$DEBIAN_URL" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
printf 'deb %s %s main\n' "$DEBIAN_URL" "$SUITE" >"$root/etc/apt/sources.list"
in_root apt-get update -qq

log "downloading mirror packages and their dependencies"
wanted=($MIRROR_PACKAGES)
for p in $OPTIONAL_MIRROR_PACKAGES; do
    if in_root apt-cache show "$p" >/dev/null 2>&1; then wanted+=("$p"); else log "optional package $p not in $SUITE: skipped"; fi
done
# --download-only against the node's own package state: exactly the dependencies the node lacks
# (after dropping the .debs debootstrap left in apt's cache).
in_root apt-get clean
in_root apt-get install -y -qq --download-only --no-install-recommends "${wanted[@]}" >/dev/null
mkdir -p "$work/pool" "$work/tools"
mv "$root"/var/cache/apt/archives/*.deb "$work/pool/"
in_root apt-get install -y -qq --download-only --no-install-recommends apt-utils >/dev/null
mv "$root"/var/cache/apt/archives/*.deb "$work/tools/"

log "configuring the node"
in_root useradd --create-home --shell /bin/bash --groups sudo kubeha
in_root passwd --lock kubeha >/dev/null
in_root passwd --lock root >/dev/null
install -m 0440 /dev/stdin "$root/etc/sudoers.d/kubeha" <<'EOF'
kubeha ALL=(ALL:ALL) NOPASSWD:ALL
EOF
install -m 0644 /dev/stdin "$root/etc/ssh/sshd_config.d/kubeha-lab.conf" <<'EOF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
EOF
# Host keys are made at each container's first boot, so every node has its own.
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat >"$root/etc/systemd/system/ssh.service.d/kubeha-lab-hostkeys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
install -m 0755 "$(dirname "$0")/kubeha-lab-init" "$root/usr/local/sbin/kubeha-lab-init"
install -m 0755 "$(dirname "$0")/kubeha-lab-modules" "$root/usr/local/sbin/kubeha-lab-modules"
cat >"$root/etc/systemd/system/kubeha-lab-modules.service" <<'EOF'
[Unit]
Description=Describe the running kernel's built-in modules to kmod (lab container)
DefaultDependencies=no
Before=systemd-modules-load.service sysinit.target
ConditionVirtualization=container

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kubeha-lab-modules

[Install]
WantedBy=sysinit.target
EOF
in_root systemctl enable kubeha-lab-modules.service >/dev/null 2>&1
# Units that only make sense on real consoles/disks, and timers that would take the apt lock
# while kubeha runs.
in_root systemctl mask console-getty.service getty@tty1.service serial-getty@.service \
    systemd-remount-fs.service apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service \
    fstrim.timer >/dev/null 2>&1
# Each container gets its own machine id at first boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

umount "$root/proc"
# Nodes reach packages only through the lab mirror, which kubeha configures.
rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
: >"$root/etc/resolv.conf"

import() {
    local tag=$1
    shift
    tar -C "$root" --numeric-owner -c . | docker import "$@" \
        --change 'ENV container=docker' - "$tag" >/dev/null
}
log "importing $NODE_TAG"
import "$NODE_TAG" --change 'CMD ["/usr/local/sbin/kubeha-lab-init"]' --change 'LABEL dev.kubeha.lab.image=node'

log "building the mirror rootfs"
mount -t proc proc "$root/proc"
cp "$work"/tools/*.deb "$root/tmp/"
in_root sh -c 'dpkg -i /tmp/*.deb >/dev/null && rm /tmp/*.deb'
mkdir -p "$root/srv/mirror/debian/pool/main" "$root/srv/mirror/debian/pool/extra"
mv "$work"/pool/*.deb "$root/srv/mirror/debian/pool/main/"
install -d -m 0700 "$root/srv/gnupg"
in_root env GNUPGHOME=/srv/gnupg gpg --batch --quiet --passphrase '' \
    --quick-gen-key 'kubeha lab mirror (test key, per image cache)' ed25519 sign never
in_root env GNUPGHOME=/srv/gnupg gpg --batch --export --output /srv/mirror/debian/kubeha-lab.gpg
in_root env GNUPGHOME=/srv/gnupg gpgconf --kill all
install -m 0755 "$(dirname "$0")/kubeha-mirror-serve" "$root/usr/local/sbin/kubeha-mirror-serve"
umount "$root/proc"
log "importing $MIRROR_TAG"
import "$MIRROR_TAG" --change 'CMD ["/usr/local/sbin/kubeha-mirror-serve"]' \
    --change 'LABEL dev.kubeha.lab.image=mirror'
log "done"
