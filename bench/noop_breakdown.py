#!/usr/bin/env python3
"""Where a no-op kubeha run spends its wall time, from the outside (no kubeha changes).

noop_breakdown.py KUBEHA SPEC [plan|apply]: runs kubeha under
`strace -f --seccomp-bpf -e trace=execve,connect,exit_group` (only those syscalls stop, so the
run is barely slowed) and reads the timeline: process start, the OpenSSH control masters
(`ssh -M -f`: connection setup ends when each one's foreground process exits after
authentication), the commands multiplexed over them (the facts script, file reads), the TCP
connections to the API (port 6443) and the masters' shutdown. Prints JSON.

A kubeha that talks to the masters itself (openssh's native mux, since 2026-12-02) starts no
ssh process for a command: each shows as a `connect` to a master's control socket instead, in
the order check (a kept master only), held session, then the run's commands. Their ends do not
show there, so for those only the start of each command wave is reported.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

LINE = re.compile(r"^(\d+)\s+(\d+):(\d+):(\d+\.\d+)\s+(\w+)\((.*)")
SSH_EXEC = re.compile(r'^"[^"]*/ssh"')
CONTROL_SOCKET = re.compile(r'sun_path="([^"]*/master)"')


def seconds(h, m, s):
    return int(h) * 3600 + int(m) * 60 + float(s)


def run(kubeha, spec, command):
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace"
        argv = [kubeha, command, "-f", spec, "-o", "json"]
        if command == "apply":
            argv.append("--yes")
        subprocess.run(
            ["strace", "-f", "--seccomp-bpf", "-tt", "-s", "256", "-e", "trace=execve,connect,exit_group",
             "-o", trace, *argv],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines = trace.read_text().splitlines()
    events = []
    for line in lines:
        m = LINE.match(line)
        if m:
            pid, h, mi, s, call, rest = m.groups()
            events.append((seconds(h, mi, s), int(pid), call, rest))
    t0 = events[0][0]
    main_pid = events[0][1]
    masters, commands, api = {}, {}, []
    exits = {}
    checks, controls = {}, []
    socket_connects = {}
    for t, pid, call, rest in events:
        t -= t0
        if call == "execve" and SSH_EXEC.match(rest):
            args = rest
            if '"-M"' in args:
                masters[pid] = [t, None]
            elif '"-O", "check"' in args:
                # One process per check; its PATH search shows as several execve lines.
                checks.setdefault(pid, t)
            elif '"-O"' in args:
                controls.append(t)
            elif "kubeha-held" in args:
                pass  # a kept master's held session: open for the whole run, not a command
            else:
                commands[pid] = [t, None, args]
        elif call == "connect" and "htons(6443)" in rest:
            api.append(t)
        elif call == "connect" and (socket := CONTROL_SOCKET.search(rest)):
            socket_connects.setdefault(socket.group(1), []).append(t)
        elif call == "exit_group":
            exits[pid] = t
            if pid in masters and masters[pid][1] is None:
                masters[pid][1] = t
            if pid in commands:
                commands[pid][1] = t
    end = exits.get(main_pid, events[-1][0] - t0)
    out = {"command": command, "wall_s": round(end, 3), "ssh_masters": len(masters),
           "ssh_masters_reused": len(checks) if not masters else 0,
           "ssh_commands": len(commands), "api_connects": len(api)}
    cmds = sorted(commands.values())
    if socket_connects and not commands:
        # Native mux: per control socket, the check (kept masters only: no master started this
        # run) and the held session come before the run's commands.
        skip = 1 if masters else 2
        starts = [ts[skip:] for ts in socket_connects.values()]
        out["ssh_masters_reused"] = 0 if masters else len(socket_connects)
        out["ssh_commands"] = sum(len(s) for s in starts)
        firsts = [ts[0] for ts in socket_connects.values()]
        out["startup_before_first_ssh_s"] = round(min(firsts), 3)
        out["connection_setup_s"] = round(min((s[0] for s in starts if s), default=end) - min(firsts), 3)
        first_wave = sorted(s[0] for s in starts if s)
        if first_wave:
            out["facts_script_starts_s"] = {"first_at_s": round(first_wave[0], 3), "last_at_s": round(first_wave[-1], 3)}
        if api:
            out["first_api_connect_at_s"] = round(api[0], 3)
            out["last_api_connect_at_s"] = round(api[-1], 3)
        out["after_last_connect_s"] = round(end - max(sum(socket_connects.values(), []) + api), 3)
        return out

    def wave(ws):
        if not ws:
            return None
        return {"s": round(max(e or end for _, e, _ in ws) - min(s for s, _, _ in ws), 3),
                "slowest_host_s": round(max((e or end) - s for s, e, _ in ws), 3)}

    # Classified by what each command runs (strace shows its first 256 characters):
    # a `sudo -n true` probe (kubeha before 2026-12-01 sent one per host), the facts
    # script (`export LC_ALL=C` first), anything else (file reads such as admin.conf).
    probes = [c for c in cmds if re.search(r"sh -c '?true'?\"", c[2])]
    facts = [c for c in cmds if "export LC_ALL=C" in c[2]]
    firsts = list(checks.values()) + [s for s, _ in masters.values()]
    if firsts:
        first_ssh = min(firsts)
        out["startup_before_first_ssh_s"] = round(first_ssh, 3)
        # Until the first command of the run starts: new masters' key exchange and login,
        # or a kept master's check and held session (see remote/reuse.rs).
        first_command = min((c[0] for c in cmds), default=end)
        out["connection_setup_s"] = round(first_command - first_ssh, 3)
    out["sudo_probe"] = wave(probes)
    out["facts_script"] = wave(facts)
    out["later_ssh_commands"] = [
        {"at_s": round(c[0], 3), "took_s": round((c[1] or end) - c[0], 3), "argv_tail": c[2][-60:]}
        for c in cmds if c not in probes and c not in facts]
    if api:
        out["first_api_connect_at_s"] = round(api[0], 3)
        out["last_api_connect_at_s"] = round(api[-1], 3)
    # Closing: the masters' `-O exit`, or (kept masters) after the last command and API call.
    busy_until = max([e or end for _, e, _ in cmds] + api[-1:] + [0.0])
    out["shutdown_s"] = round(end - (min(controls) if controls else busy_until), 3)
    return out


if __name__ == "__main__":
    kubeha, spec = sys.argv[1], sys.argv[2]
    command = sys.argv[3] if len(sys.argv) > 3 else "plan"
    print(json.dumps(run(kubeha, spec, command), indent=2))
