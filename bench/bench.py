#!/usr/bin/env python3
"""kubeha's benchmark, driven by bench/run.sh (read bench/README.md first).

Every lab run holds the machine-wide lab lock (/tmp/kubeha-lab.lock) from `lab up` to `lab down`,
so other lab users wait instead of sharing the cores mid-measurement. Figures go to
<out>/results.json (everything) and <out>/results.md (the table); each run of a tool is timed
wall-clock around the process, with its CPU time and peak memory sampled from /proc.
"""

import argparse
import contextlib
import fcntl
import json
import os
import re
import resource
import ssl
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
KUBEHA = ROOT / "target/release/kubeha"
LOCK = "/tmp/kubeha-lab.lock"
CALICO = (ROOT / "../shared/fixtures/calico-v3.28.1.yaml").resolve()
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# --- processes: wall, CPU and peak RSS -------------------------------------------------------


def _proc_stat(pid):
    """(ppid, utime+stime seconds, rss kB, comm) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    f = raw[raw.rindex(")") + 2 :].split()
    # f[0] is field 3 (state): ppid is field 4, utime 14, stime 15, rss 24.
    return int(f[1]), (int(f[11]) + int(f[12])) / TICKS, int(f[21]) * PAGE_KB, comm


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Sampler(threading.Thread):
    """Samples a process every 50 ms: its own RSS and CPU, and its RSS plus that of every ssh
    process of the lab (OpenSSH control masters daemonize with -f, so they are found by the
    lab's subnet in their command line, not by parentage). Each new pid is looked at once, so
    sampling stays cheap on a busy machine."""

    def __init__(self, pid, subnet_prefix):
        super().__init__(daemon=True)
        self.pid, self.prefix = pid, subnet_prefix
        self.peak_rss_kb = 0
        self.peak_total_kb = 0
        self.peak_ssh = 0
        self.cpu_s = 0.0
        self.stop = threading.Event()
        self._is_lab_ssh = {}

    def _lab_ssh(self, pid):
        known = self._is_lab_ssh.get(pid)
        if known is None:
            st = _proc_stat(pid)
            known = bool(st) and st[3] == "ssh" and (st[0] == self.pid or self.prefix in _cmdline(pid))
            self._is_lab_ssh[pid] = known
        return known

    def run(self):
        while not self.stop.is_set():
            me = _proc_stat(self.pid)
            if me is None:
                break
            self.cpu_s = me[1]
            self.peak_rss_kb = max(self.peak_rss_kb, me[2])
            total, count = me[2], 0
            for entry in os.scandir("/proc"):
                if entry.name.isdigit() and self._lab_ssh(entry.name):
                    st = _proc_stat(entry.name)
                    if st:
                        total += st[2]
                        count += 1
            self.peak_total_kb = max(self.peak_total_kb, total)
            self.peak_ssh = max(self.peak_ssh, count)
            time.sleep(0.05)


def timed(argv, subnet_prefix="", env=None, cwd=None, check=True, stdout_file=None):
    """Runs argv; returns a dict of wall/cpu/rss figures plus its stdout."""
    t0 = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = open(stdout_file, "w+") if stdout_file else subprocess.PIPE
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True)
    sampler = Sampler(p.pid, subnet_prefix or "\0")
    sampler.start()
    if stdout_file:
        _, err = p.communicate()
        out.seek(0)
        stdout = out.read()
        out.close()
    else:
        stdout, err = p.communicate()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.stop.set()
    sampler.join()
    result = {
        "argv": [str(a) for a in argv[:3]],
        "wall_s": round(wall, 3),
        "cpu_s": round(sampler.cpu_s, 3),
        # The process and the children it waited for (ssh clients; not the daemonized masters).
        "cpu_with_children_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3),
        "peak_rss_mb": round(sampler.peak_rss_kb / 1024, 1),
        "peak_rss_with_ssh_mb": round(sampler.peak_total_kb / 1024, 1),
        "peak_ssh_processes": sampler.peak_ssh,
        "rc": p.returncode,
    }
    if check and p.returncode != 0:
        sys.stderr.write(err[-4000:])
        raise SystemExit(f"{argv[:3]} failed with {p.returncode}")
    result["_stdout"], result["_stderr"] = stdout, err
    return result


def public(r):
    return {k: v for k, v in r.items() if not k.startswith("_")}


def phases_of(ndjson):
    """Per-phase seconds from kubeha's JSON output: `apply -o json`'s one document or
    `-o ndjson`'s last line (`timings`: `phase`, `seconds`), an older output's final `done`
    event, else the progress events that close a phase (no host, status done)."""
    def result_timings(doc):
        t = doc.get("timings") if isinstance(doc, dict) else None
        if isinstance(t, list) and all(isinstance(x, dict) for x in t):
            return {x["phase"]: x["seconds"] for x in t}
        return None

    phases = {}
    try:
        whole = result_timings(json.loads(ndjson))
        if whole is not None:
            return whole
    except ValueError:
        pass
    for line in ndjson.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if not isinstance(e, dict):
            continue
        if (last := result_timings(e)) is not None:
            return last
        if e.get("event") == "done" and isinstance(e.get("timings"), list):
            return {name: secs for name, secs in e["timings"]}
        if e.get("status") == "done" and "host" not in e and e.get("phase") and "seconds" in e:
            phases[e["phase"]] = e["seconds"]
    return phases


# --- labs ---------------------------------------------------------------------------------


@contextlib.contextmanager
def lab_lock():
    with open(LOCK, "a") as f:
        t = time.monotonic()
        fcntl.flock(f, fcntl.LOCK_EX)
        waited = time.monotonic() - t
        if waited > 1:
            log(f"waited {waited:.0f}s for the lab lock")
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class LabRun:
    """One fresh lab, taken down when the block ends (inside the lab lock)."""

    def __init__(self, name, topology, workers, debs, state_root):
        self.name, self.topology, self.workers, self.debs = name, topology, workers, debs
        self.state = state_root / name
        self.spec = self.state / "cluster.yaml"
        self.record = None

    def kubeha(self, *args, binary=KUBEHA, **kw):
        return timed([binary, *args], subnet_prefix=self.prefix, **kw)

    def lab(self, *args):
        argv = [KUBEHA, "lab", "--name", self.name, "--state-dir", self.state, *args]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    def up(self, workers=None):
        args = ["up", "--topology", self.topology, "--calico-manifest", CALICO]
        if workers is not None:
            args += ["--workers", str(workers)]
        for d in self.debs:
            args += ["--debs", d]
        t = time.monotonic()
        self.lab(*args)
        self.record = json.loads((self.state / "lab.json").read_text())
        self.prefix = self.record["subnet"]["network"].rsplit(".", 1)[0] + "."
        return round(time.monotonic() - t, 1)

    def down_quietly(self):
        subprocess.run([KUBEHA, "lab", "--name", self.name, "--state-dir", self.state, "down"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self):
        self.down_quietly()
        self.prefix = ""
        try:
            self.lab_up_s = self.up(self.workers)
        except BaseException:
            # A lab that failed to come up is taken down too: its nodes would hold the
            # host's inotify instances and addresses for every lab after it.
            self.down_quietly()
            raise
        return self

    def __exit__(self, *exc):
        self.lab("down")

    def node_memory_mb(self):
        """Each lab container's memory use (MiB) as Docker's cgroups account it."""
        out = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
            capture_output=True, text=True, check=True).stdout
        units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
        mem = {}
        for line in out.splitlines():
            name, usage = line.split(" ", 1)
            m = re.match(r"([\d.]+)\s*([KMG]?i?B)", usage)
            if m and name.startswith(f"kubeha-lab-{self.name}-"):
                host = name.removeprefix(f"kubeha-lab-{self.name}-")
                mem[host] = round(float(m.group(1)) * units.get(m.group(2), 1), 1)
        return mem


def lab_containers(run):
    """The full ids of the lab's running containers."""
    return subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"name=kubeha-lab-{run.name}-"],
                          capture_output=True, text=True, check=True).stdout.split()


def hosts_cpu_s(ids):
    """CPU seconds the containers `ids` have used so far, from their cgroups (v2's cpu.stat
    under systemd's or cgroupfs's driver, v1's cpuacct.usage)."""
    seconds = 0.0
    for i in ids:
        v2 = [Path(f"/sys/fs/cgroup/system.slice/docker-{i}.scope/cpu.stat"), Path(f"/sys/fs/cgroup/docker/{i}/cpu.stat")]
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{i}/cpuacct.usage")
        stat = next((p for p in v2 if p.exists()), None)
        if stat:
            seconds += int(re.search(r"^usage_usec (\d+)", stat.read_text(), re.M).group(1)) / 1e6
        elif v1.exists():
            seconds += int(v1.read_text()) / 1e9
        else:
            raise SystemExit(f"no CPU accounting found for container {i[:12]}")
    return seconds


def machine_busy_s():
    """CPU seconds this machine has spent busy (every process and the kernel), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def noop_hosts_cpu(run):
    """What one no-op apply costs the hosts themselves (facts scripts, sshd, the API's
    answers): their CPU over the run, less what they use idle over as long a time after it.
    The lab's hosts share this machine's cores, so this bounds the no-op's wall time here."""
    ids = lab_containers(run)
    before = hosts_cpu_s(ids)
    r = run.kubeha("apply", "-f", run.spec, "--yes", "-o", "json")
    during = hosts_cpu_s(ids) - before
    time.sleep(r["wall_s"])
    idle = hosts_cpu_s(ids) - before - during
    # The containers include the lab's package mirror, which a no-op does not use.
    return {"wall_s": r["wall_s"], "hosts_cpu_s": round(during - idle, 2), "idle_cpu_s": round(idle, 2),
            "containers": len(ids)}


def idle_cores(run, seconds=10):
    """The cores the converged lab uses at rest (etcd, the stand-in control plane, the
    kubelets): what its no-op and add-one share this machine's cores with."""
    ids = lab_containers(run)
    before = hosts_cpu_s(ids)
    time.sleep(seconds)
    return round((hosts_cpu_s(ids) - before) / seconds, 2)


def slowest_steps(ndjson, top=5):
    """The slowest host steps of each phase, from kubeha's progress events (`-o ndjson`): a
    host's `done` event carries its step and seconds; the phase is the last one started."""
    phase, steps = None, {}
    for line in ndjson.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if not isinstance(e, dict) or e.get("event") != "progress":
            continue
        if "host" not in e and e.get("phase") and e.get("status") == "info":
            phase = e["phase"]
        elif e.get("host") and e.get("status") == "done" and e.get("seconds") is not None and phase:
            steps.setdefault(phase, []).append((e["seconds"], e["host"], e["message"]))
    return {ph: [{"host": h, "step": m[:80].replace("|", "/"), "s": round(t, 1)} for t, h, m in sorted(xs, reverse=True)[:top]]
            for ph, xs in steps.items()}


def apply(run, label, binary=KUBEHA):
    log(f"{run.name}: kubeha apply ({label})")
    # ndjson: the progress events (each host step's seconds), then the result document.
    ids = lab_containers(run)
    hosts_before, busy_before = hosts_cpu_s(ids), machine_busy_s()
    r = run.kubeha("apply", "-f", run.spec, "--yes", "-o", "ndjson", binary=binary)
    # What the hosts themselves did, and how busy the whole machine was: with every core
    # busy, the hosts' CPU over the cores is the least wall time this machine allows.
    r["hosts_cpu_s"] = round(hosts_cpu_s(ids) - hosts_before, 1)
    r["machine_busy_cores"] = round((machine_busy_s() - busy_before) / r["wall_s"], 2)
    r["phases"] = phases_of(r["_stdout"])
    r["slowest_steps"] = slowest_steps(r["_stdout"])
    result = result_of(r["_stdout"])
    r["survey_s"] = round(result["surveySeconds"], 2) if "surveySeconds" in result else None
    if "connectSeconds" in result:
        r["connect_s"] = round(result["connectSeconds"], 2)
        r["ssh_masters"] = result["sshMasters"]
    return r


def result_of(ndjson):
    """The result document of `-o json`, or `-o ndjson`'s `result` event; {} when none."""
    for line in reversed(ndjson.splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("result"), dict):
            doc = doc["result"]
        if isinstance(doc, dict) and "changes" in doc:
            return doc
    return {}


def add_one(run, workers, binary=KUBEHA):
    """Adds the worker `workers` to the converged cluster as an operator does: `plan` shows
    it (this run starts the new host's SSH master, and any others that are gone), then
    `apply` makes it, with the masters the plan left."""
    grow_s = run.up(workers=workers)
    log(f"{run.name}: kubeha plan (one worker more)")
    shown = run.kubeha("plan", "-f", run.spec, "--detailed-exitcode", "-o", "json", binary=binary, check=False)
    if shown["rc"] != 3:
        sys.stderr.write(shown["_stderr"][-4000:])
        raise SystemExit(f"the plan before adding worker-{workers} exited {shown['rc']}, not 3 (changes)")
    added = public(apply(run, "add one worker", binary=binary))
    added["grow_lab_s"] = grow_s
    added["plan_first"] = {k: shown[k] for k in ("wall_s", "cpu_s", "peak_ssh_processes")}
    return added


def apply_split(r):
    """Where an apply's wall time went: connecting, the survey, the phases, and the rest
    (planning, revoking the join credentials, releasing the SSH masters)."""
    phases = sum(r.get("phases", {}).values())
    if r.get("survey_s") is None:
        return f"phases {phases:.1f} s"
    connect = r.get("connect_s")
    rest = r["wall_s"] - r["survey_s"] - phases - (connect or 0)
    parts = [f"survey {r['survey_s']} s", f"phases {phases:.1f} s", f"the rest {rest:.1f} s"]
    if connect is not None:
        m = r["ssh_masters"]
        parts.insert(0, f"connect {connect} s ({m['started']} masters started, {m['reused']} reused)")
    split = ", ".join(parts)
    if "plan_first" in r:
        split += f"; the plan before it {r['plan_first']['wall_s']} s"
    return split


def median_of(results):
    walls = [r["wall_s"] for r in results]
    cpus = [r["cpu_s"] for r in results]
    cpus_children = [r["cpu_with_children_s"] for r in results]
    return {
        "runs": len(results),
        "median_wall_s": round(statistics.median(walls), 3),
        "min_wall_s": min(walls),
        "max_wall_s": max(walls),
        "median_cpu_s": round(statistics.median(cpus), 3),
        "median_cpu_with_children_s": round(statistics.median(cpus_children), 3),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "peak_rss_with_ssh_mb": max(r["peak_rss_with_ssh_mb"] for r in results),
        "each_wall_s": walls,
    }


def noop(run, command, runs, binary=KUBEHA):
    results = []
    for i in range(runs):
        if command == "plan":
            r = run.kubeha("plan", "-f", run.spec, "--detailed-exitcode", "-o", "json", binary=binary)
        else:
            r = run.kubeha("apply", "-f", run.spec, "--yes", "-o", "json", binary=binary)
        results.append(r)
    return median_of(results)


def breakdown(run, binary=KUBEHA):
    return [json.loads(subprocess.run(
        [sys.executable, BENCH / "noop_breakdown.py", binary, run.spec, cmd],
        check=True, capture_output=True, text=True).stdout) for cmd in ("plan", "apply")]


# --- the Ansible peer ---------------------------------------------------------------------


def ansible(run, playbook_dir, label):
    """Runs the peer playbook against the lab; returns its timing."""
    render = run.state / "render"
    subprocess.run([KUBEHA, "render", "-f", run.spec, "--out", render], check=True,
                   stdout=subprocess.DEVNULL)
    inventory = run.state / "inventory.json"
    subprocess.run([sys.executable, BENCH / "ansible/inventory.py", run.state / "lab.json", render,
                    inventory], check=True)
    env = dict(os.environ, ANSIBLE_CONFIG=str(BENCH / "ansible/ansible.cfg"))
    venv_bin = BENCH / ".venv/bin"
    log(f"{run.name}: ansible-playbook ({label})")
    logfile = run.state / f"ansible-{label}.log"
    r = timed([venv_bin / "ansible-playbook", "-i", inventory, BENCH / "ansible/seed.yml"],
              subnet_prefix=run.prefix, env=env, stdout_file=logfile, check=False)
    recap = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                       r["_stdout"], re.M)
    r["changed"] = sum(int(c) for _, _, c, _, _ in recap)
    r["failed"] = sum(int(f) + int(u) for _, _, _, u, f in recap)
    if r["rc"] != 0:
        sys.stderr.write(r["_stdout"][-6000:])
        raise SystemExit(f"ansible-playbook ({label}) failed; log in {logfile}")
    return r


# --- failover drills ----------------------------------------------------------------------


def api_ok(address, timeout=0.5):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((address, 6443), timeout=timeout) as s:
            with ctx.wrap_socket(s, server_hostname="kubernetes") as t:
                t.settimeout(timeout)
                t.sendall(b"GET /readyz HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")
                return t.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def outage_after(run, action, address, limit=30.0):
    """Probes the API every 100 ms from just before `action` until it answers again;
    returns (seconds until the first success after the first failure, failed probes)."""
    start = time.monotonic()
    action()
    failures, first_fail = 0, None
    while time.monotonic() - start < limit:
        t = time.monotonic()
        if api_ok(address):
            if first_fail is not None or failures == 0:
                return round(time.monotonic() - start, 2), failures
        else:
            failures += 1
            first_fail = first_fail or t
        time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
    return None, failures


# --- the benchmark ------------------------------------------------------------------------


def seed_kubeha(args, debs, state_root):
    with lab_lock(), LabRun("bench-seed", "seed", None, debs, state_root) as run:
        out = {"load_before": loadavg(), "lab_up_s": run.lab_up_s}
        cold = apply(run, "cold")
        out["cold_apply"] = public(cold)
        out["node_memory_mb"] = run.node_memory_mb()
        log("bench-seed: no-op plan and apply")
        out["noop_plan"] = noop(run, "plan", args.runs)
        out["noop_apply"] = noop(run, "apply", args.runs)
        log("bench-seed: where the no-op time goes (strace timeline)")
        out["noop_breakdown"] = breakdown(run)
        out["noop_hosts_cpu"] = noop_hosts_cpu(run)
        if args.before:
            # An earlier kubeha on the same converged cluster, interleaved with nothing else:
            # before/after figures from one sitting.
            log(f"bench-seed: no-op plan and apply with {args.before}")
            out["before"] = {
                "binary": str(args.before),
                "noop_plan": noop(run, "plan", args.runs, binary=args.before),
                "noop_apply": noop(run, "apply", args.runs, binary=args.before),
                "noop_breakdown": breakdown(run, binary=args.before),
            }
        out["add_one_worker"] = add_one(run, 3)
        out["load_after"] = loadavg()
        return out


# What the pieces of kubeha's facts script cost on a converged control plane, measured on the
# host itself (`date +%s%N` around each, as root): the slow questions only control planes ask
# (etcdctl, a Go program, three times; the script runs them in the background), the one
# systemctl call for every service, one sha256sum and one stat over the managed files.
FACTS_COSTS = r"""
t() { s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo "$(( (e - s) / 1000000 ))"; }
etcdctl() { ETCDCTL_API=3 command etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt --key /etc/kubernetes/pki/etcd/healthcheck-client.key "$@"; }
echo "etcdctl_member_list_ms=$(t etcdctl member list -w json)"
echo "etcdctl_endpoint_health_cluster_ms=$(t etcdctl endpoint health --cluster -w json)"
echo "etcdctl_endpoint_status_ms=$(t etcdctl endpoint status -w json)"
echo "systemctl_show_5_units_ms=$(t systemctl show --timestamp=us+utc -p Id,LoadState,ActiveState,UnitFileState,ActiveEnterTimestamp haproxy keepalived containerd kubelet kubeha-hosts)"
echo "sha256sum_and_stat_ms=$(t sh -c 'sha256sum /etc/kubernetes/manifests/* /etc/containerd/config.toml; stat -c %.6Y /etc/kubernetes/manifests/* /etc/containerd/config.toml')"
echo "dpkg_query_ms=$(t dpkg-query -W kubelet kubeadm kubectl containerd)"
"""


def facts_costs(run, host):
    argv = [KUBEHA, "lab", "--name", run.name, "--state-dir", run.state, "ssh", host, "--",
            "sudo", "sh", "-c", FACTS_COSTS]
    t = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    costs = {k: int(v) for k, v in re.findall(r"^(\w+)=(\d+)$", out, re.M)}
    costs["one_fresh_ssh_session_with_these_ms"] = round((time.monotonic() - t) * 1000)
    return costs


def seed_ansible(args, debs, state_root):
    with lab_lock(), LabRun("bench-ansible", "seed", None, debs, state_root) as run:
        out = {"load_before": loadavg()}
        out["cold"] = public(ansible(run, BENCH / "ansible", "cold"))
        out["noop"] = [public(ansible(run, BENCH / "ansible", f"noop-{i}")) for i in range(args.ansible_runs)]
        out["noop_median_wall_s"] = statistics.median(r["wall_s"] for r in out["noop"])
        out["facts_costs_cp_1"] = facts_costs(run, "cp-1")
        out["load_after"] = loadavg()
        return out


def scale_point(workers, debs, state_root, before=None):
    with lab_lock(), LabRun(f"bench-w{workers}", "seed", workers, debs, state_root) as run:
        out = {"workers": workers, "lab_up_s": run.lab_up_s, "load_before": loadavg()}
        cold = apply(run, f"cold, {workers} workers")
        out["cold_apply"] = public(cold)
        out["idle_cores"] = idle_cores(run)
        out["noop_apply"] = noop(run, "apply", 3)
        out["noop_breakdown"] = breakdown(run)
        out["noop_hosts_cpu"] = noop_hosts_cpu(run)
        if before:
            out["before"] = {"binary": str(before), "noop_apply": noop(run, "apply", 3, binary=before)}
        out["add_one_worker"] = add_one(run, workers + 1)
        if before:
            # The earlier binary adds the next worker to the same cluster, one larger.
            out["before"]["add_one_worker"] = add_one(run, workers + 2, binary=before)
        out["node_memory_mb"] = run.node_memory_mb()
        out["load_after"] = loadavg()
        return out


def drills(debs, state_root):
    with lab_lock(), LabRun("bench-ha", "seed-ha", None, debs, state_root) as run:
        out = {"load_before": loadavg()}
        apply(run, "seed-ha cold")
        log("bench-ha: kubeha verify --disruptive")
        v = run.kubeha("verify", "-f", run.spec, "--disruptive", "-o", "json", check=False)
        verdict = [json.loads(l) for l in v["_stdout"].splitlines() if l.startswith("{")]
        out["verify"] = {"rc": v["rc"], "drills": verdict[-1].get("drills") if verdict else None}
        vip = run.record["virtual_ip"]
        log("bench-ha: kill the active load balancer")
        back, failed = outage_after(run, lambda: run.lab("fault", "kill", "lb-1"), vip)
        out["active_lb_killed"] = {"api_back_after_s": back, "failed_probes_100ms": failed}
        out["load_after"] = loadavg()
        return out


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def cpu_bound(r, cpus):
    """An apply's CPU against what the machine has: its hosts' CPU over the cores is the
    shortest wall time this machine allows for it."""
    return (f"the hosts used {r['hosts_cpu_s']} CPU seconds, so at least {r['hosts_cpu_s'] / cpus:.0f} s "
            f"on {cpus} cores; the machine was {r['machine_busy_cores']} of {cpus} cores busy over the run")


def strace_split(b):
    """One no-op under strace, over the control sockets: their commands' starts show, not their ends."""
    starts = b.get("facts_script_starts_s") or {}
    return (f"start-up {b.get('startup_before_first_ssh_s')} s, SSH connection setup "
            f"{b.get('connection_setup_s')} s ({b['ssh_masters']} masters started, "
            f"{b.get('ssh_masters_reused', 0)} kept ones reused, {b['ssh_commands']} commands, no ssh "
            f"client process), facts scripts started {starts.get('first_at_s')}-{starts.get('last_at_s')} s, "
            f"API connects {b.get('first_api_connect_at_s')}-{b.get('last_api_connect_at_s')} s "
            f"({b['api_connects']}), exit {b['after_last_connect_s']} s after the last connect, "
            f"total {b['wall_s']} s")


def table(res):
    rows = ["| figure | value |", "| --- | --- |"]

    def row(k, v):
        rows.append(f"| {k} | {v} |")

    m = res["machine"]
    row("machine", f"{m['cpus']} CPUs, {m['mem_gib']} GiB, load {m['load_start']} at start")
    s, a = res.get("seed_kubeha"), res.get("seed_ansible")
    if s:
        row("load average (1, 5, 15 min) around the kubeha seed part", f"{s['load_before']} -> {s['load_after']}")
        row("kubeha cold apply (seed)", f"{s['cold_apply']['wall_s']} s, CPU {s['cold_apply']['cpu_s']} s")
        if s["cold_apply"].get("hosts_cpu_s") is not None:
            row("what the cold apply cost the machine (seed)", cpu_bound(s["cold_apply"], res["machine"]["cpus"]))
        slowest = s["cold_apply"].get("slowest_steps", {})
        for name, secs in s["cold_apply"]["phases"].items():
            steps = "; ".join(f"{x['host']} {x['step']} {x['s']} s" for x in slowest.get(name, [])[:3])
            row(f"&nbsp;&nbsp;phase {name}", f"{secs:.1f} s" + (f" (slowest steps: {steps})" if steps else ""))
        for k in ("noop_plan", "noop_apply"):
            x = s[k]
            row(f"kubeha {k.replace('_', ' ')} (median of {x['runs']})",
                f"{x['median_wall_s']} s wall, {x['median_cpu_s']} s CPU ({x.get('median_cpu_with_children_s')} s with "
                f"ssh clients), peak RSS {x['peak_rss_mb']} MB "
                f"({x['peak_rss_with_ssh_mb']} MB with ssh)")
        before = s.get("before")
        for b in s.get("noop_breakdown", []) + (before or {}).get("noop_breakdown", []):
            probe, facts = b.get("sudo_probe") or {}, b.get("facts_script") or {}
            if "facts_s" in b:
                # Results from before the breakdown told the waves apart: its first wave is the
                # sudo probe, the facts scripts are the first of its later commands.
                n = b["ssh_masters"]
                scripts = b["later_ssh_commands"][:n]
                probe = {"s": b["facts_s"]}
                facts = {"s": round(max(c["at_s"] + c["took_s"] for c in scripts) - min(c["at_s"] for c in scripts), 3),
                         "slowest_host_s": max(c["took_s"] for c in scripts)}
                b = {**b, "later_ssh_commands": b["later_ssh_commands"][n:]}
            which = "before: " if before and b in before["noop_breakdown"] else ""
            if "after_last_connect_s" in b:
                row(f"{which}no-op {b['command']} under strace: where the time goes", strace_split(b))
                continue
            sudo = f"sudo probe {probe['s']} s, " if probe.get("s") is not None else "no sudo probe, "
            row(f"{which}no-op {b['command']} under strace: where the time goes",
                f"start-up {b.get('startup_before_first_ssh_s')} s, SSH connection setup "
                f"{b.get('connection_setup_s')} s ({b['ssh_masters']} masters started, "
                f"{b.get('ssh_masters_reused', 0)} kept ones reused), {sudo}"
                f"facts script {facts.get('s')} s (slowest host "
                f"{facts.get('slowest_host_s')} s), {len(b.get('later_ssh_commands', []))} later ssh "
                f"commands, API first connect at {b.get('first_api_connect_at_s')} s "
                f"({b['api_connects']} connects), shutdown {b.get('shutdown_s')} s, total {b['wall_s']} s")
        if before:
            for k in ("noop_plan", "noop_apply"):
                x = before[k]
                row(f"before ({before['binary']}): {k.replace('_', ' ')} (median of {x['runs']})",
                    f"{x['median_wall_s']} s wall ({x['median_cpu_with_children_s']} s CPU with ssh clients)")
        if s.get("noop_hosts_cpu"):
            c = s["noop_hosts_cpu"]
            row("the hosts' own CPU in one no-op apply (seed)",
                f"{c['hosts_cpu_s']} s over {c['containers']} containers (that run {c['wall_s']} s; "
                f"{c['idle_cpu_s']} s idle use subtracted)")
        row("kubeha add one worker (seed)", f"{s['add_one_worker']['wall_s']} s ({apply_split(s['add_one_worker'])})")
    if a:
        row("load average (1, 5, 15 min) around the Ansible part", f"{a['load_before']} -> {a['load_after']}")
        row("Ansible cold (seed)", f"{a['cold']['wall_s']} s ({a['cold']['changed']} tasks changed), "
            f"Ansible's CPU {a['cold']['cpu_with_children_s']} s with its workers")
        row(f"Ansible no-op (median of {len(a['noop'])})", f"{a['noop_median_wall_s']} s")
        if a.get("facts_costs_cp_1"):
            row("facts script pieces on cp-1 (ms)", ", ".join(f"{k} {v}" for k, v in a["facts_costs_cp_1"].items()))
    for k, v in res.get("ratios", {}).items():
        row(f"ratio {k}", v)
    for p in res.get("scale", []):
        w = p["workers"]
        row(f"{w} workers: load average", f"{p['load_before']} -> {p['load_after']}")
        row(f"{w} workers: cold apply", f"{p['cold_apply']['wall_s']} s, peak RSS {p['cold_apply']['peak_rss_mb']} MB "
            f"({p['cold_apply']['peak_rss_with_ssh_mb']} MB with {p['cold_apply']['peak_ssh_processes']} ssh)")
        if p["cold_apply"].get("hosts_cpu_s") is not None:
            row(f"{w} workers: what the cold apply cost the machine", cpu_bound(p["cold_apply"], res["machine"]["cpus"]))
        row(f"{w} workers: cold apply phases", ", ".join(f"{k} {v:.1f} s" for k, v in p["cold_apply"]["phases"].items()))
        row(f"{w} workers: no-op apply (median of 3)", f"{p['noop_apply']['median_wall_s']} s, peak RSS "
            f"{p['noop_apply']['peak_rss_mb']} MB ({p['noop_apply']['peak_rss_with_ssh_mb']} MB with ssh)")
        for b in p.get("noop_breakdown", []):
            row(f"{w} workers: no-op {b['command']} under strace", strace_split(b))
        if p.get("idle_cores") is not None:
            row(f"{w} workers: the converged lab at rest", f"{p['idle_cores']} of {res['machine']['cpus']} cores")
        if p.get("noop_hosts_cpu"):
            c = p["noop_hosts_cpu"]
            row(f"{w} workers: the hosts' own CPU in one no-op apply",
                f"{c['hosts_cpu_s']} s over {c['containers']} containers sharing {res['machine']['cpus']} cores "
                f"(that run {c['wall_s']} s; {c['idle_cpu_s']} s idle use subtracted)")
        row(f"{w} workers: add one worker", f"{p['add_one_worker']['wall_s']} s ({apply_split(p['add_one_worker'])})")
        if p["add_one_worker"].get("hosts_cpu_s") is not None:
            row(f"{w} workers: what adding one cost the machine", cpu_bound(p["add_one_worker"], res["machine"]["cpus"]))
        b = p.get("before")
        if b:
            row(f"{w} workers, before ({b['binary']}): no-op apply (median of 3)", f"{b['noop_apply']['median_wall_s']} s")
            row(f"{w} workers, before ({b['binary']}): add one more worker",
                f"{b['add_one_worker']['wall_s']} s ({apply_split(b['add_one_worker'])})")
    for k, e in res.get("failed_parts", {}).items():
        row(f"{k}", f"failed: {e[:200]}")
    for p in res.get("scale_failed", []):
        row(f"{p['workers']} workers", f"did not complete: {p['error']}")
    d = res.get("drills")
    if d:
        for dr in (d["verify"]["drills"] or []):
            row(f"drill: {dr.get('drill')}",
                f"{dr.get('failures')} of {dr.get('requests')} requests failed, longest outage "
                f"{dr.get('longest_outage_ms')} ms, detected {dr.get('detected_after_ms', dr.get('detect_ms'))} ms")
        k = d["active_lb_killed"]
        row("drill: active load balancer killed", f"API back after {k['api_back_after_s']} s "
            f"({k['failed_probes_100ms']} failed probes)")
    return "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--debs", nargs="+", default=[])
    ap.add_argument("--table-only", action="store_true", help="rewrite results.md from results.json")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", type=Path, help="an earlier kubeha binary: its no-op figures on the seed lab, and its no-op and an add-one at each scale point, too")
    ap.add_argument("--ansible-runs", type=int, default=3)
    ap.add_argument("--scale", default="2 10 25 50")
    ap.add_argument("--parts", default="seed,ansible,scale,drills")
    ap.add_argument("--resume", type=Path, help="a results.json to add the parts run now to")
    ap.add_argument("--stop-at", help="UTC HH:MM after which no further scale point or drill is started")
    args = ap.parse_args()
    if args.table_only:
        res = json.loads((args.out / "results.json").read_text())
        (args.out / "results.md").write_text(table(res))
        print(table(res))
        return
    if not args.debs:
        ap.error("--debs: the Kubernetes stand-in packages for the labs' mirror")
    args.out.mkdir(parents=True, exist_ok=True)
    # Lab state (keys, kubeconfigs) stays out of the results folder, which is committed.
    state_root = ROOT / "target/bench/labs"
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    res = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "mem_gib": round(mem_kb / 2**20, 1),
                    "load_start": loadavg(), "kernel": os.uname().release},
    }
    if args.resume:
        res = {**json.loads(args.resume.read_text()), "resumed": res["started"]}
        res.pop("failed_parts", None)
    parts = args.parts.split(",")

    def save():
        (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        (args.out / "results.md").write_text(table(res))

    def part(key, fn, *a):
        """Runs one part; a failure is recorded and the benchmark goes on with the next."""
        try:
            res[key] = fn(*a)
        except (SystemExit, subprocess.CalledProcessError, OSError, KeyError, ValueError) as e:
            log(f"{key} failed: {e}")
            res.setdefault("failed_parts", {})[key] = str(e)[:500]
        save()

    if "seed" in parts:
        part("seed_kubeha", seed_kubeha, args, args.debs, state_root)
    if "ansible" in parts:
        part("seed_ansible", seed_ansible, args, args.debs, state_root)
    s, a = res.get("seed_kubeha"), res.get("seed_ansible")
    if s and a:
        res["ratios"] = {
            "cold kubeha/Ansible": ratio(s["cold_apply"]["wall_s"], a["cold"]["wall_s"]),
            "no-op apply kubeha/Ansible": ratio(s["noop_apply"]["median_wall_s"], a["noop_median_wall_s"]),
        }
        save()
    if "scale" in parts:
        res["scale"], res["scale_failed"] = [], []
        for w in [int(x) for x in args.scale.split()]:
            if args.stop_at and time.strftime("%H:%M", time.gmtime()) >= args.stop_at:
                res["scale_failed"].append({"workers": w, "error": f"not started: past --stop-at {args.stop_at}"})
                break
            try:
                res["scale"].append(scale_point(w, args.debs, state_root, args.before))
            except (SystemExit, subprocess.CalledProcessError) as e:
                res["scale_failed"].append({"workers": w, "error": str(e)[:300]})
                save()
                break
            save()
        if len(res["scale"]) >= 2:
            first, last = res["scale"][0], res["scale"][-1]
            res.setdefault("ratios", {}).update({
                f"cold {last['workers']}w/{first['workers']}w": ratio(last["cold_apply"]["wall_s"], first["cold_apply"]["wall_s"]),
                f"add one worker {last['workers']}w/{first['workers']}w": ratio(
                    last["add_one_worker"]["wall_s"], first["add_one_worker"]["wall_s"]),
            })
            with_plan = [p["add_one_worker"]["wall_s"] + p["add_one_worker"].get("plan_first", {}).get("wall_s", 0)
                         for p in (last, first)]
            res["ratios"][f"add one worker, its plan included, {last['workers']}w/{first['workers']}w"] = ratio(*with_plan)
    if "drills" in parts:
        if args.stop_at and time.strftime("%H:%M", time.gmtime()) >= args.stop_at:
            res.setdefault("failed_parts", {})["drills"] = f"not started: past --stop-at {args.stop_at}"
        else:
            part("drills", drills, args.debs, state_root)
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res["machine"]["load_end"] = loadavg()
    save()
    print(table(res))


if __name__ == "__main__":
    main()
