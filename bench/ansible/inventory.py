#!/usr/bin/env python3
"""inventory.py LAB_JSON RENDER_DIR OUT: the Ansible inventory (JSON) of a kubeha lab."""
import json
import sys
from pathlib import Path

lab = json.loads(Path(sys.argv[1]).read_text())
render = str(Path(sys.argv[2]).resolve())
state = Path(lab["state_dir"])
groups = {"loadBalancer": "lb", "controlPlane": "cp", "worker": "worker"}
inv = {g: {"hosts": {}} for g in groups.values()}
for h in lab["hosts"]:
    for role in h["roles"]:
        inv[groups[role]]["hosts"][h["name"]] = {"ansible_host": h["address"]}
# kubeadm init runs on the first control plane; the others join it.
first_cp = next(h["name"] for h in lab["hosts"] if "controlPlane" in h["roles"])
inv["init"] = {"hosts": {first_cp: {}}}
inv["all"] = {
    "vars": {
        "ansible_user": "kubeha",
        "ansible_ssh_private_key_file": str(state / "id_ed25519"),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={state / 'known_hosts'} -o StrictHostKeyChecking=yes",
        "render_dir": render,
    }
}
Path(sys.argv[3]).write_text(json.dumps(inv, indent=1) + "\n")
