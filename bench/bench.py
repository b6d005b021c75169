#!/usr/bin/env python3
"""sysvisor's benchmark suite (docs/bench.md). Run through scripts/bench, as root.

Every scenario runs sysvisor and its baseline in the same run, interleaved, repeated; the
results are ratios. Prints one table and writes the same as JSON (build/bench.json).
"""
import argparse
import ctypes
import fcntl
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST_ROOT = 100000  # host uid of the rootless containers' root (the agent's default --userns)


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


class ScenarioError(Exception):
    """A scenario could not run; the others still do, and the exit status says so."""


def parse_kv(line):
    """`op k=v k=v` -> dict of ints (and the op)."""
    words = line.split()
    out = {"op": words[0]} if words else {}
    for w in words[1:]:
        if "=" in w:
            k, v = w.split("=", 1)
            out[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
    return out


def last_line(text, op):
    for line in reversed(text.splitlines()):
        if line.startswith(op + " "):
            return parse_kv(line)
    return None


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class IdleFleet:
    """`count` idle containers (`workload idle`) sharing one stdout pipe, each writing "ready" once
    it runs past its handoff; with `poke`, each has its own stdin, and a byte there makes it do one
    trapped call and write "answered" (scenarios 6 and 8)."""

    def __init__(self, bench, count, poke=False):
        self.count = count
        self.buf = b""
        self.r, w = os.pipe()
        self.procs = []
        t0 = time.monotonic()
        try:
            for _ in range(count):
                self.procs.append(subprocess.Popen(
                    bench.sv_exec("bench-deny", bench.workload, "idle"), stdout=w, stderr=bench.errlog,
                    stdin=subprocess.PIPE if poke else subprocess.DEVNULL))
        finally:
            os.close(w)
        self.ready = self.wait_lines(b"ready\n", count, 120 + count * 0.1)
        self.started_s = time.monotonic() - t0

    def wait_lines(self, line, n, timeout):
        """Reads the shared pipe until `line` was seen n times (counting from the last call's
        leftovers) or the time runs out; returns how many were seen."""
        deadline = time.monotonic() + timeout
        while self.buf.count(line) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                break
            chunk = os.read(self.r, 65536)
            if not chunk:
                break
            self.buf += chunk
        seen = self.buf.count(line)
        self.buf = b""  # lines after the n-th: an idle container writes only when asked
        return seen

    def poke(self, timeout=30):
        """One trapped call in every container; returns (seconds until all answered, answered,
        bad answers)."""
        t0 = time.monotonic()
        for p in self.procs:
            p.stdin.write(b"x")
            p.stdin.flush()
        deadline = t0 + timeout
        answered = bad = 0
        while answered + bad < self.count and time.monotonic() < deadline:
            if not select.select([self.r], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            chunk = os.read(self.r, 65536)
            if not chunk:
                break
            self.buf += chunk
            lines = self.buf.split(b"\n")
            self.buf = lines.pop()
            answered += sum(1 for l in lines if l == b"answered")
            bad += sum(1 for l in lines if l.startswith(b"bad"))
        return time.monotonic() - t0, answered, bad

    def stop(self):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
            if p.stdin:
                p.stdin.close()
        os.close(self.r)


class ForkedDaemon:
    """What Bench.daemon needs of a Popen, for a daemon forked by FdStoreHost."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.001)
        return self.returncode

    def send_signal(self, sig):
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)


class FdStoreHost:
    """systemd's file descriptor store as sysvisor uses it, after tests/integration/restart_test.cpp's
    FdStoreHost (sd_notify(3), sd_listen_fds(3)): NOTIFY_SOCKET takes FDSTORE=1 + FDNAME= with the fd
    (SCM_RIGHTS) and FDSTOREREMOVE=1; a started daemon gets the stored fds as 3, 4, ... with LISTEN_FDS,
    LISTEN_FDNAMES and LISTEN_PID. Like systemd it keeps one copy of an open file: a daemon that takes
    its fds back stores them again (kcmp, compared with those stored under the same name, the only
    duplicates sysvisor sends). A thread only drains the socket, so that the daemon's blocking
    sd_notify never waits on this script; the messages are applied when the store is looked at."""

    SYS_KCMP, KCMP_FILE = 312, 0  # x86_64

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.store = {}  # name -> [fd]
        self.pending = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.stopping = False
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.reader = threading.Thread(target=self.drain, daemon=True)
        self.reader.start()

    def drain(self):
        space = socket.CMSG_SPACE(16 * 4)
        while not self.stopping:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, space, socket.MSG_CMSG_CLOEXEC)
            except OSError:
                return
            fds = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    n = len(payload) // 4
                    fds += list(memoryview(payload)[:n * 4].cast("i"))
            if b"READY=1" in data.split(b"\n"):
                self.ready.set()
            with self.lock:
                self.pending.append((data, fds))

    def same_file(self, a, b):
        pid = os.getpid()
        return self.libc.syscall(self.SYS_KCMP, pid, pid, self.KCMP_FILE, a, b) == 0

    def apply(self):
        with self.lock:
            pending, self.pending = self.pending, []
        for data, fds in pending:
            env = dict(l.split("=", 1) for l in data.decode(errors="replace").splitlines() if "=" in l)
            name = env.get("FDNAME") or "stored"
            if env.get("FDSTORE") == "1":
                have = self.store.setdefault(name, [])
                for fd in fds:
                    if any(self.same_file(h, fd) for h in have):
                        os.close(fd)
                    else:
                        have.append(fd)
                if not have:
                    del self.store[name]
            else:
                for fd in fds:
                    os.close(fd)
            if env.get("FDSTOREREMOVE") == "1":
                for fd in self.store.pop(name, []):
                    os.close(fd)

    def stored(self, prefix):
        self.apply()
        return sum(len(fds) for name, fds in self.store.items() if name.startswith(prefix))

    def start(self, argv, log_path, nice=0):
        """Forks and execs `argv` with the store's fds; returns a ForkedDaemon."""
        self.apply()
        self.ready.clear()
        fds = [(name, fd) for name, lst in self.store.items() for fd in lst]
        env = dict(os.environ, NOTIFY_SOCKET=self.path)
        for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(k, None)
        if fds:
            env["LISTEN_FDS"] = str(len(fds))
            env["LISTEN_FDNAMES"] = ":".join(name for name, _ in fds)
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        top = 3 + len(fds)
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(log, 1)
                os.dup2(log, 2)
                # Above every target first, then into place (3, 4, ...) without O_CLOEXEC.
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for _, fd in fds]
                for i, fd in enumerate(high):
                    os.dup2(fd, 3 + i)
                if fds:
                    env["LISTEN_PID"] = str(os.getpid())
                if nice:
                    os.nice(nice)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        os.close(log)
        return ForkedDaemon(pid)

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.reader.join(5)
        self.apply()
        for fds in self.store.values():
            for fd in fds:
                os.close(fd)
        self.store = {}
        os.unlink(self.path)


class Bench:
    def __init__(self, args):
        self.args = args
        self.src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.bin = os.path.abspath(args.bin)
        self.workload = os.path.join(self.bin, "bench_workload")
        self.raw = os.path.join(self.bin, "bench_raw_loop")
        self.agent = os.path.join(self.bin, "sysvisor-agent")
        self.sysvisor = os.path.join(self.bin, "sysvisor")
        for exe in (self.workload, self.raw, self.agent, self.sysvisor):
            if not os.access(exe, os.X_OK):
                die(f"{exe} missing: build it first (scripts/bench does)")
        self.tmp = tempfile.mkdtemp(prefix="sysvisor-bench-")
        os.chmod(self.tmp, 0o755)
        self.runtime = os.path.join(self.tmp, "run")
        self.policies = os.path.join(self.tmp, "policies")
        self.audit = os.path.join(self.tmp, "audit.jsonl")
        self.daemon_log = os.path.join(self.tmp, "daemon.log")
        self.errlog = open(os.path.join(self.tmp, "stderr.log"), "ab")
        self.daemon = None
        self.results = []
        self.runs = 1 if args.quick else args.runs

    # ---- set-up -------------------------------------------------------------------------
    def setup(self):
        # 1000 containers: the daemon holds a few fds for each.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = max(soft, min(hard, 1 << 16))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        os.makedirs(self.runtime)
        os.makedirs(self.policies)
        for name in ("rootless-devices.yaml", "rootless-tuning.yaml", "mount-images.yaml"):
            shutil.copy(os.path.join(self.src, "policies", name), self.policies)
        shutil.copy(os.path.join(self.src, "bench", "bench-deny.yaml"), self.policies)
        self.rootfs = os.path.join(self.tmp, "rootfs")
        self.make_rootfs(self.rootfs)
        # The native baseline of scenario 2 works in a tmpfs, like the container's /dev.
        self.native_dir = os.path.join(self.tmp, "native")
        os.makedirs(self.native_dir)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "bench", self.native_dir], check=True)
        self.start_daemon()
        probe = subprocess.run(self.raw_loop(1, self.workload, "deny", "1"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        self.sync_wakeup = "sync_wakeup=1" in probe.stderr.decode()

    def make_rootfs(self, d):
        for sub in ("bin", "proc", "dev", "tmp", "etc", "images", "mnt/a"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        shutil.copy("/bin/busybox", os.path.join(d, "bin", "busybox"))
        shutil.copy(self.workload, os.path.join(d, "bin", "workload"))
        for applet in ("sh", "ls", "cat"):
            os.symlink("busybox", os.path.join(d, "bin", applet))
        with open(os.path.join(d, "etc", "passwd"), "w") as f:
            f.write("root:x:0:0:root:/:/bin/sh\n")
        os.chmod(os.path.join(d, "tmp"), 0o1777)
        img = os.path.join(d, "images", "x.img")
        with open(img, "wb") as f:
            f.truncate(16 << 20)
        mkfs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
        subprocess.run([mkfs, "-q", "-F", img], check=True, stdout=subprocess.DEVNULL)
        for root, dirs, files in os.walk(d):
            for n in dirs + files:
                os.lchown(os.path.join(root, n), HOST_ROOT, HOST_ROOT)
        os.lchown(d, HOST_ROOT, HOST_ROOT)

    def daemon_argv(self):
        wrapper = self.args.daemon_wrapper.split() if self.args.daemon_wrapper else []
        if wrapper and not os.path.isabs(wrapper[0]):
            wrapper[0] = shutil.which(wrapper[0]) or wrapper[0]  # FdStoreHost execs it by path
        return wrapper + [self.sysvisor, "--log-level", self.args.daemon_log_level, "serve", "--runtime-dir",
                          self.runtime, "--policies", self.policies, "--audit", self.audit]

    def start_daemon(self):
        log = open(self.daemon_log, "ab")
        offset = log.tell()  # a restart appends: only the new daemon's lines count
        self.daemon = subprocess.Popen(
            self.daemon_argv(), stdout=log, stderr=log,
            preexec_fn=(lambda: os.nice(self.args.daemon_nice)) if self.args.daemon_nice else None)
        sock = os.path.join(self.runtime, "agent.sock")
        for _ in range(200):
            with open(self.daemon_log, "rb") as f:
                f.seek(offset)
                serving = b"serving" in f.read()
            if os.path.exists(sock) and serving:
                return
            if self.daemon.poll() is not None:
                die("the daemon exited: " + open(self.daemon_log).read())
            time.sleep(0.05)
        die("the daemon did not start: " + open(self.daemon_log).read())

    def stop_daemon(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()

    def cleanup(self):
        self.stop_daemon()
        subprocess.run(["umount", "-l", self.native_dir], stderr=subprocess.DEVNULL)
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"bench: kept {self.tmp}", file=sys.stderr)

    # ---- commands -----------------------------------------------------------------------
    def sv_exec(self, policy, *cmd):
        return [self.agent, "exec", "--runtime-dir", self.runtime, "--policy", policy, "--"] + list(cmd)

    def sv_run(self, policy, *cmd):
        return [self.agent, "run", "--runtime-dir", self.runtime, "--policy", policy,
                "--rootfs", self.rootfs, "--"] + list(cmd)

    def raw_loop(self, n, *cmd, mode="blocking"):
        return [self.raw, "--mode", mode, str(n), "--"] + list(cmd)

    def run(self, argv, op, timeout=120):
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=self.errlog, timeout=timeout)
        got = last_line(p.stdout.decode(), op)
        if p.returncode != 0 or got is None:
            raise ScenarioError(f"`{' '.join(argv)}` exited {p.returncode}, output: {p.stdout.decode()!r}; "
                f"see {self.tmp}/stderr.log and daemon.log (--keep keeps them)")
        return got

    def record(self, sid, name, unit, value, baseline, ratio, target, ok, **details):
        r = {"id": sid, "name": name, "unit": unit, "value": value, "baseline": baseline,
             "ratio": ratio, "target": target, "pass": ok, "details": details}
        self.results.append(r)
        mark = "PASS" if ok else ("MISS" if ok is False else "info")
        print(f"  {sid:<6} {name:<50} {fmt(value):>12} {fmt(baseline):>12} {ratio:>7.2f}  {target:<10} {mark}",
              flush=True)

    # ---- 1. one trapped call, denied ----------------------------------------------------
    def s1_deny(self):
        n = 5000 if self.args.quick else 20000
        sv, raw = [], []
        for _ in range(self.runs):
            raw.append(self.run(self.raw_loop(1, self.workload, "deny", str(n)), "deny"))
            sv.append(self.run(self.sv_exec("bench-deny", self.workload, "deny", str(n)), "deny"))
        for r in sv + raw:
            if r["bad"]:
                raise ScenarioError(f"scenario 1: {r['bad']} calls were not denied with EPERM")
        m_sv, m_raw = median([r["median_ns"] for r in sv]), median([r["median_ns"] for r in raw])
        p_sv, p_raw = median([r["p99_ns"] for r in sv]), median([r["p99_ns"] for r in raw])
        self.record("1", "denied call, median ns/call", "ns", m_sv, m_raw, m_sv / m_raw, "<= 1.25x",
                    m_sv <= 1.25 * m_raw, p99_ns=p_sv, baseline_p99_ns=p_raw, calls_per_run=n,
                    runs=self.runs, per_run_sysvisor=[r["median_ns"] for r in sv],
                    per_run_raw=[r["median_ns"] for r in raw])
        self.record("1p", "denied call, p99 ns/call", "ns", p_sv, p_raw, p_sv / p_raw, "-", None)
        # Diagnostics: the raw loop waiting in epoll first, and copying sysvisor's syscall shape.
        for mode, sid in (("epoll", "1e"), ("asio", "1a")):
            got = [self.run([self.raw, "--mode", mode, "1", "--", self.workload, "deny", str(n)], "deny")
                   for _ in range(self.runs)]
            m = median([r["median_ns"] for r in got])
            self.record(sid, f"raw loop --mode {mode}, median ns/call", "ns", m, m_raw, m / m_raw, "-", None)

    # ---- 2. emulated mknod ---------------------------------------------------------------
    def s2_mknod(self):
        n = 50 if self.args.quick else 200
        sv, nat = [], []
        for _ in range(self.runs):
            nat.append(self.run([self.workload, "mknod-cycle", str(n), os.path.join(self.native_dir, "null"),
                                 str(HOST_ROOT), str(HOST_ROOT)], "mknod-cycle"))
            sv.append(self.run(self.sv_run("rootless-devices", "/bin/workload", "mknod-cycle", str(n),
                                           "/dev/bench-null"), "mknod-cycle"))
        m_sv, m_nat = median([r["median_ns"] for r in sv]), median([r["median_ns"] for r in nat])
        p_sv = median([r["p99_ns"] for r in sv])
        self.record("2", "emulated mknod+unlink /dev/null, median ns", "ns", m_sv, m_nat, m_sv / m_nat,
                    "<= 3x", m_sv <= 3 * m_nat, p99_ns=p_sv, baseline_p99_ns=median([r["p99_ns"] for r in nat]),
                    cycles_per_run=n, runs=self.runs,
                    mknod_alone_median_ns=median([r["mknod_median_ns"] for r in sv]),
                    baseline_mknod_alone_median_ns=median([r["mknod_median_ns"] for r in nat]),
                    unlink_path={"unlinked": sum(r["unlinked"] for r in sv),
                                 "umount2_then_unlink": sum(r["umounted"] for r in sv)})

    # ---- 3. throughput --------------------------------------------------------------------
    def flood(self, n, sysvisor, seconds, raw_mode="blocking"):
        """Aggregate calls/s of n flooders that start together once all of them run."""
        args = [self.workload, "flood", "sync", str(int(seconds * 1e9))]
        if sysvisor:
            procs = [subprocess.Popen(self.sv_exec("bench-deny", *args), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self.errlog) for _ in range(n)]
            feeds = [(p, 1) for p in procs]
        else:
            procs = [subprocess.Popen(self.raw_loop(n, *args, mode=raw_mode), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self.errlog)]
            feeds = [(procs[0], n)]
        try:
            for p, count in feeds:  # every flooder runs (past its handoff) before the clock starts
                for _ in range(count):
                    if p.stdout.readline() != b"ready\n":
                        raise ScenarioError(f"scenario 3: a flooder did not start; see {self.tmp}/stderr.log")
            start = time.monotonic_ns() + int(0.1e9)
            for p, count in feeds:  # 21-byte records: one pipe feeds all of raw_loop's children
                p.stdin.write(f"{start:>20}\n".encode() * count)
                p.stdin.close()
            # The daemon's CPU time during the flood window: is one core its cap?
            time.sleep(max(0.0, (start - time.monotonic_ns()) / 1e9))
            cpu0 = self.daemon_cpu_s()
            time.sleep(seconds)
            cpu1 = self.daemon_cpu_s()
            outs = []
            for p in procs:
                out = p.stdout.read()
                if p.wait(120) != 0:
                    raise ScenarioError(f"scenario 3: a flooder exited {p.returncode}; see {self.tmp}/stderr.log")
                outs += [parse_kv(l) for l in out.decode().splitlines() if l.startswith("flood ")]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if len(outs) != n:
            raise ScenarioError(f"scenario 3: {len(outs)} of {n} flooders reported")
        calls = sum(o["calls"] for o in outs)
        if sysvisor:
            self.flood_cpu.append((cpu1 - cpu0) / seconds)
        return calls / seconds, sum(o["late"] for o in outs)

    def daemon_cpu_s(self):
        with open(f"/proc/{self.daemon.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def s3_throughput(self):
        seconds = 0.5 if self.args.quick else 1.5
        runs = 1 if self.args.quick else max(1, self.runs - 2)
        for n in (1, 16, 256):
            sv, raw, one, late = [], [], [], 0
            self.flood_cpu = []
            for _ in range(runs):
                r, l1 = self.flood(n, False, seconds)
                s, l2 = self.flood(n, True, seconds)
                o, l3 = self.flood(n, False, seconds, raw_mode="one-thread")
                raw.append(r)
                sv.append(s)
                one.append(o)
                late += l1 + l2 + l3
            m_sv, m_raw = median(sv), median(raw)
            self.record(f"3.{n}", f"throughput, {n} container(s), calls/s", "calls/s", m_sv, m_raw,
                        m_sv / m_raw, ">= 0.8x", m_sv >= 0.8 * m_raw, seconds=seconds, runs=runs,
                        late_starters=late, per_run_sysvisor=sv, per_run_raw=raw,
                        daemon_cpu_cores=round(median(self.flood_cpu), 2))
            # Control: the raw loop with a single thread for every listener (a bare event loop).
            m_one = median(one)
            self.record(f"3.{n}o", f"raw loop, one thread for all, {n}", "calls/s", m_one, m_raw, m_one / m_raw,
                        "-", None)

    # ---- 4. fairness ----------------------------------------------------------------------
    def quiet(self, start_ns, raw=False, gap_us=100):
        cmd = [self.workload, "quiet", str(start_ns), str(gap_us)]
        return subprocess.Popen(self.raw_loop(1, *cmd) if raw else self.sv_exec("bench-deny", *cmd),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errlog)

    def quiet_runs(self, raw, window, runs):
        """The quiet container's stats alone and with 8 flooders, `runs` times each."""
        alone, flooded = [], []
        for _ in range(runs):
            start = time.monotonic_ns() + int(0.3e9)
            q = self.quiet(start, raw)
            time.sleep(0.3 + window)
            alone.append(self.finish_quiet(q))

            start = time.monotonic_ns() + int(0.6e9)
            end = start + int((window + 0.4) * 1e9)
            flood = [self.workload, "flood", str(start), str(end)]
            if raw:
                flooders = [subprocess.Popen(self.raw_loop(8, *flood), stdout=subprocess.DEVNULL, stderr=self.errlog)]
            else:
                flooders = [subprocess.Popen(self.sv_exec("bench-deny", *flood), stdout=subprocess.DEVNULL,
                                             stderr=self.errlog) for _ in range(8)]
            q = self.quiet(start + int(0.1e9), raw)
            time.sleep(0.6 + 0.1 + window)
            flooded.append(self.finish_quiet(q))
            for f in flooders:
                f.wait(60)
        return alone, flooded

    def mounts(self, count, raw):
        """The quiet container (under sysvisor or the raw loop) while a sysvisor container mounts."""
        m = subprocess.Popen(self.sv_run("mount-images", "/bin/workload", "mount-cycle", str(count),
                                         "/images/x.img", "/mnt/a"),
                             stdout=subprocess.PIPE, stderr=self.errlog)
        first = m.stdout.readline().decode()
        if not first.startswith("started"):
            m.kill()
            raise ScenarioError(f"scenario 4: the mount container did not start: {first!r}; see {self.tmp}/stderr.log")
        q = self.quiet(0, raw)
        rest, _ = m.communicate(timeout=240)
        quiet = self.finish_quiet(q)
        mc = last_line(rest.decode(), "mount-cycle")
        if m.returncode != 0 or mc is None:
            raise ScenarioError(f"scenario 4: the mount container failed ({m.returncode}); see {self.tmp}/stderr.log")
        return quiet, mc

    def finish_quiet(self, q):
        out, _ = q.communicate(b"stop\n", timeout=60)
        got = last_line(out.decode(), "quiet")
        if q.returncode != 0 or got is None:
            raise ScenarioError(f"scenario 4: the quiet container failed ({q.returncode}); see {self.tmp}/stderr.log")
        return got

    def s4_fairness(self):
        window = 0.5 if self.args.quick else 1.0
        runs = 1 if self.args.quick else self.runs  # p99s are bimodal here: more runs
        alone, flooded = self.quiet_runs(False, window, runs)
        raw_alone, raw_flooded = self.quiet_runs(True, window, runs)
        p_alone = median([r["p99_ns"] for r in alone])
        p_flood = median([r["p99_ns"] for r in flooded])
        self.record("4a", "quiet p99 with 8 flooders vs alone, ns", "ns", p_flood, p_alone, p_flood / p_alone,
                    "<= 3x", p_flood <= 3 * p_alone, runs=runs,
                    quiet_median_alone=median([r["median_ns"] for r in alone]),
                    quiet_median_flooded=median([r["median_ns"] for r in flooded]),
                    samples=[r["n"] for r in flooded])
        # The same with the raw loop (a thread per listener): how much is the machine's share.
        rp_alone = median([r["p99_ns"] for r in raw_alone])
        rp_flood = median([r["p99_ns"] for r in raw_flooded])
        self.record("4ar", "raw loop: quiet p99 with 8 flooders vs alone", "ns", rp_flood, rp_alone,
                    rp_flood / rp_alone, "-", None, quiet_median_alone=median([r["median_ns"] for r in raw_alone]),
                    quiet_median_flooded=median([r["median_ns"] for r in raw_flooded]))

        # Mounts (loop device + ext4 + umount) in another container, emulated by sysvisor.
        count = 20 if self.args.quick else 100
        quiet, mc = self.mounts(count, False)
        self.record("4b", f"quiet p99 during {count} mounts vs alone, ns", "ns", quiet["p99_ns"], p_alone,
                    quiet["p99_ns"] / p_alone, "<= 2x", quiet["p99_ns"] <= 2 * p_alone,
                    mount_cycle_median_ns=mc["median_ns"], quiet_samples=quiet["n"],
                    quiet_median_ns=quiet["median_ns"], quiet_max_ns=quiet["max_ns"])
        rquiet, _ = self.mounts(count, True)
        self.record("4br", "raw loop: quiet p99 during the same mounts", "ns", rquiet["p99_ns"], rp_alone,
                    rquiet["p99_ns"] / rp_alone, "-", None, quiet_median_ns=rquiet["median_ns"])

    # ---- 7. a neighbour's flood of slow calls ---------------------------------------------
    def sched_flooder(self, sysvisor):
        """8 processes of another container flooding emulated sched_setscheduler (ESRCH)."""
        cmd = ["/bin/workload", "sched-flood", "8"]
        argv = self.sv_run("rootless-tuning", *cmd) if sysvisor else self.raw_loop(8, self.workload, "flood", "0",
                                                                                  str(time.monotonic_ns() + int(600e9)))
        # Its own process group: the raw loop's workload children go with it.
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errlog,
                             start_new_session=True)
        if sysvisor and p.stdout.readline() != b"ready\n":
            p.kill()
            raise ScenarioError(f"scenario 7: the flooding container did not start; see {self.tmp}/stderr.log")
        return p

    def stop_flooder(self, p, sysvisor):
        if sysvisor:
            out, _ = p.communicate(b"stop\n", timeout=60)
            got = last_line(out.decode(), "sched-flood")
            if p.returncode != 0 or got is None:
                raise ScenarioError(f"scenario 7: the flooding container failed ({p.returncode}); "
                                    f"see {self.tmp}/stderr.log")
            return got["calls"]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return 0

    def s7_slow_flood(self):
        n = 50 if self.args.quick else 200
        cycle = lambda: self.run(self.sv_run("rootless-devices", "/bin/workload", "mknod-cycle", str(n),
                                             "/dev/bench-null"), "mknod-cycle")
        native = lambda: self.run([self.workload, "mknod-cycle", str(n), os.path.join(self.native_dir, "null"),
                                   str(HOST_ROOT), str(HOST_ROOT)], "mknod-cycle")
        alone, flooded, nat_alone, nat_flooded, calls = [], [], [], [], []
        for _ in range(self.runs):
            alone.append(cycle())
            f = self.sched_flooder(True)
            try:
                flooded.append(cycle())
            finally:
                calls.append(self.stop_flooder(f, True))
            # The machine's share: a native cycle beside 8 raw-loop flooders (no sysvisor at all).
            nat_alone.append(native())
            f = self.sched_flooder(False)
            try:
                time.sleep(0.2)
                nat_flooded.append(native())
            finally:
                self.stop_flooder(f, False)
        m_alone, m_flood = median([r["median_ns"] for r in alone]), median([r["median_ns"] for r in flooded])
        self.record("7", "mknod cycle beside a slow-call flood vs alone", "ns", m_flood, m_alone, m_flood / m_alone,
                    "<= 5x", m_flood <= 5 * m_alone, runs=self.runs, cycles_per_run=n,
                    flood_calls_per_run=calls, p99_alone=median([r["p99_ns"] for r in alone]),
                    p99_flooded=median([r["p99_ns"] for r in flooded]))
        r_alone, r_flood = median([r["median_ns"] for r in nat_alone]), median([r["median_ns"] for r in nat_flooded])
        self.record("7r", "native mknod cycle beside 8 raw-loop flooders", "ns", r_flood, r_alone, r_flood / r_alone,
                    "-", None)

    # ---- 5. untrapped calls ----------------------------------------------------------------
    def s5_untrapped(self):
        n = 100000 if self.args.quick else 300000
        runs = 3 if self.args.quick else 6 * self.runs
        agent, nop, none = [], [], []
        for _ in range(runs):
            none.append(self.run([self.workload, "untrapped", str(n)], "untrapped")["median_ns"])
            nop.append(self.run([self.workload, "--nop-filter", "untrapped", str(n)], "untrapped")["median_ns"])
            agent.append(self.run(self.sv_exec("rootless-devices", self.workload, "untrapped", str(n)),
                                  "untrapped")["median_ns"])
        # A deterministic cost under noise that only adds (the other hyperthread, other tenants):
        # the best run is the estimate; the medians are in the details.
        b_a, b_nop, b_none = min(agent), min(nop), min(none)
        self.record("5", "untrapped getpid+read, ns/iter, vs 1-rule filter", "ns", b_a, b_nop, b_a / b_nop,
                    "<= 1.05x", b_a <= 1.05 * b_nop, estimate=f"best of {runs} runs", runs=runs, iterations=n,
                    median_of_runs={"agent": median(agent), "one_rule": median(nop), "no_filter": median(none)},
                    per_run={"agent": agent, "one_rule": nop, "no_filter": none})
        self.record("5n", "untrapped getpid+read, ns/iter, vs no filter", "ns", b_a, b_none, b_a / b_none, "-",
                    None)

    # ---- 6. scale and memory -----------------------------------------------------------------
    def handoffs(self, count):
        times = []
        for _ in range(count):
            r, w = os.pipe()
            env = dict(os.environ, SYSVISOR_AGENT_TIMING_FD=str(w))
            p = subprocess.run(self.sv_exec("bench-deny", self.workload, "handoff"), stdout=subprocess.PIPE,
                               stderr=self.errlog, env=env, pass_fds=(w,), timeout=30)
            os.close(w)
            marks = os.read(r, 256).decode()
            os.close(r)
            got = last_line(p.stdout.decode(), "handoff")
            hello = re.search(r"hello (\d+)", marks)
            released = re.search(r"exec (\d+)", marks)
            if p.returncode != 0 or got is None or hello is None or released is None:
                raise ScenarioError(f"scenario 6: handoff run failed ({p.returncode}, {marks!r}); is the agent's timing hook built?")
            # (hello -> the workload released to exec, hello -> the workload's first instruction)
            times.append((int(released.group(1)) - int(hello.group(1)), got["exec_ns"] - int(hello.group(1))))
        return times

    def exec_costs(self, count):
        """What execve alone costs: a minimal static process re-execing itself."""
        costs = []
        for _ in range(count):
            p = subprocess.run([self.workload, "reexec"], stdout=subprocess.PIPE, stderr=self.errlog, timeout=30)
            before = last_line(p.stdout.decode(), "reexec")
            after = last_line(p.stdout.decode(), "handoff")
            if p.returncode != 0 or before is None or after is None:
                raise ScenarioError("scenario 6: the workload could not re-exec itself")
            costs.append(after["exec_ns"] - before["before_ns"])
        return costs

    def rss_kib(self):
        with open(f"/proc/{self.daemon.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def s6_scale(self):
        count = self.args.containers or (200 if self.args.quick else 1000)
        # A fresh daemon: memory the earlier scenarios' sessions freed would hide the growth.
        self.stop_daemon()
        self.start_daemon()
        hand_alone = self.handoffs(10 if self.args.quick else 30)
        before = self.rss_kib()
        fleet = IdleFleet(self, count)
        try:
            ready, started_s = fleet.ready, fleet.started_s
            time.sleep(0.5)  # let the daemon finish its bookkeeping of the last handoffs
            after = self.rss_kib()
            hand_loaded = self.handoffs(10 if self.args.quick else 30) if ready == count else []
        finally:
            fleet.stop()
        if ready < count:
            raise ScenarioError(f"scenario 6: only {ready} of {count} idle containers came up; see {self.tmp}/stderr.log")
        per = (after - before) / count
        self.record("6m", f"daemon RSS growth per idle container ({count}), KiB", "KiB", per, 64.0, per / 64.0,
                    "<= 64 KiB", per <= 64.0, rss_before_kib=before, rss_after_kib=after, containers=count,
                    all_started_in_s=round(started_s, 2))
        released = [t[0] for t in hand_loaded]
        started = [t[1] for t in hand_loaded]
        m_loaded = median(released)
        self.record("6h", f"handoff hello->exec, median us ({count} idle)", "us", m_loaded / 1e3, 1000.0,
                    m_loaded / 1e6, "<= 1 ms", m_loaded <= 1e6,
                    alone_median_us=median([t[0] for t in hand_alone]) / 1e3, p99_us=sorted(released)[-1] / 1e3)
        # With the kernel's execve: the workload's first instruction, beside what execve alone costs.
        m_exec = median(self.exec_costs(10 if self.args.quick else 30))
        m_started = median(started)
        self.record("6x", "hello->workload running, median us", "us", m_started / 1e3, (m_loaded + m_exec) / 1e3,
                    m_started / (m_loaded + m_exec), "-", None, execve_alone_median_us=m_exec / 1e3)
        # Sessions end when their tasks do: wait until the daemon has let them go.
        time.sleep(0.5)

    # ---- 8. restart with idle containers --------------------------------------------------
    def control_status(self):
        """`sysvisor status --json`'s StatusReply, None while no daemon answers."""
        p = subprocess.run([self.sysvisor, "status", "--json", "--runtime-dir", self.runtime, "--timeout", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if p.returncode != 0:
            return None
        return json.loads(p.stdout).get("status")

    def restart_round(self, fleet, count, trigger):
        """Times one restart: from `trigger` (signal sent) until the new daemon serves every
        container: its control socket answers with an uptime younger than the signal and `count`
        supervised processes (all adopted), then each container's trapped call (one poke each,
        sent only now, so the old daemon cannot have answered it) is answered."""
        t0 = time.monotonic()
        marks = trigger() or {}
        deadline = t0 + 60
        while True:
            st = self.control_status()
            now = time.monotonic()
            if st is not None and float(st["uptime_seconds"]) < now - t0:
                break
            if now > deadline:
                raise ScenarioError(f"scenario 8: no new daemon answered within 60 s; see {self.tmp}/daemon.log")
            time.sleep(0.01)
        status_s = now - t0
        if int(st["sessions"]) != count:
            raise ScenarioError(f"scenario 8: the new daemon serves {st['sessions']} of {count} idle containers; "
                                f"see {self.tmp}/daemon.log")
        poke_s, answered, bad = fleet.poke()
        all_s = time.monotonic() - t0
        if answered != count:
            raise ScenarioError(f"scenario 8: after the restart {answered} of {count} containers' trapped calls "
                                f"were answered with EPERM ({bad} otherwise); see {self.tmp}/daemon.log")
        time.sleep(0.3)  # the next round's daemon is settled (adopted, stored, ticked)
        return dict(marks, all_s=all_s, status_s=status_s, poke_s=poke_s, containers=int(st["containers"]))

    def daemon_records(self, offset):
        """The audit log's daemon records (start, handover) after byte `offset`."""
        out = []
        with open(self.audit, "rb") as f:
            f.seek(offset)
            for line in f:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if j.get("event") == "daemon":
                    out.append((j.get("action"), j.get("reason", ""), int(j.get("sessions", 0))))
        return out

    def log_problems(self, offset):
        with open(self.daemon_log, "rb") as f:
            f.seek(offset)
            return [l.decode(errors="replace").rstrip() for l in f
                    if b"sysvisor error:" in l or b"sysvisor warning:" in l]

    def record_restart(self, sid, name, rounds, count, audit_ok, **extra):
        alls = [r["all_s"] * 1e3 for r in rounds]
        m = median(alls)
        self.record(sid, name, "ms", m, 1000.0, m / 1000.0, "< 1 s", m < 1000.0, containers=count,
                    rounds=len(rounds), per_round_ms=[round(x, 1) for x in alls],
                    min_ms=round(min(alls), 1), max_ms=round(max(alls), 1),
                    status_answers_median_ms=round(median([r["status_s"] * 1e3 for r in rounds]), 1),
                    poke_after_median_ms=round(median([r["poke_s"] * 1e3 for r in rounds]), 1),
                    audit_marks_ok=f"{audit_ok} of {len(rounds)}",
                    **{k: round(median([r[k] * 1e3 for r in rounds]), 1) for k in rounds[0] if k.endswith("_ms")},
                    **extra)

    def s8_restart(self):
        count = self.args.containers or (200 if self.args.quick else 1000)
        rounds = 1 if self.args.quick else self.runs
        audit_at = os.path.getsize(self.audit) if os.path.exists(self.audit) else 0

        # (a) In place: SIGUSR2 re-executes the binary with every fd (no service manager).
        self.stop_daemon()
        log_at = os.path.getsize(self.daemon_log)
        self.start_daemon()
        fleet = IdleFleet(self, count, poke=True)
        try:
            if fleet.ready < count:
                raise ScenarioError(f"scenario 8: only {fleet.ready} of {count} idle containers came up; "
                                    f"see {self.tmp}/stderr.log")
            alone_s, answered, _ = fleet.poke()
            if answered != count:
                raise ScenarioError(f"scenario 8: before any restart only {answered} of {count} containers answered")
            upgrade = [self.restart_round(fleet, count, lambda: self.daemon.send_signal(signal.SIGUSR2))
                       for _ in range(rounds)]
        finally:
            fleet.stop()
        marks = self.daemon_records(audit_at)
        ok = sum(1 for a, b in zip(marks, marks[1:])
                 if a == ("handover", "upgrade", count) and b == ("start", "", count))
        problems = self.log_problems(log_at)
        self.record_restart("8u", f"in-place upgrade (SIGUSR2), {count} idle: ms", upgrade, count, ok,
                            poke_alone_ms=round(alone_s * 1e3, 1), started_in_s=round(fleet.started_s, 1),
                            daemon_log_problems=problems[:10])

        # (b) Under a service manager's fd store: SIGTERM hands over; kill -9 just dies.
        time.sleep(0.5)  # the containers' sessions close
        self.stop_daemon()
        audit_at = os.path.getsize(self.audit)
        log_at = os.path.getsize(self.daemon_log)
        host = FdStoreHost(os.path.join(self.tmp, "notify"))
        fleet = None
        term, kill = [], []
        try:
            self.daemon = host.start(self.daemon_argv(), self.daemon_log, self.args.daemon_nice)
            if not host.ready.wait(30):
                raise ScenarioError(f"scenario 8: the daemon under the fd store did not start; see {self.tmp}/daemon.log")
            fleet = IdleFleet(self, count, poke=True)
            if fleet.ready < count:
                raise ScenarioError(f"scenario 8: only {fleet.ready} of {count} idle containers came up under the "
                                    f"fd store; see {self.tmp}/stderr.log")
            deadline = time.monotonic() + 30
            while host.stored("sysvisor.l.") < count and time.monotonic() < deadline:
                time.sleep(0.05)
            if host.stored("sysvisor.l.") != count:
                raise ScenarioError(f"scenario 8: {host.stored('sysvisor.l.')} of {count} listeners in the fd store")

            def restart(sig):
                t0 = time.monotonic()
                self.daemon.send_signal(sig)
                self.daemon.wait(60)
                exited = time.monotonic() - t0
                self.daemon = host.start(self.daemon_argv(), self.daemon_log, self.args.daemon_nice)
                return {"old_daemon_gone_ms": exited}

            for sig, into in ((signal.SIGTERM, term), (signal.SIGKILL, kill)):
                for _ in range(rounds):
                    into.append(self.restart_round(fleet, count, lambda: restart(sig)))
                    if host.stored("sysvisor.l.") != count:
                        raise ScenarioError(f"scenario 8: after a restart {host.stored('sysvisor.l.')} of {count} "
                                            "listeners are in the fd store")
            stored = {p: host.stored(p) for p in ("sysvisor.l.", "sysvisor.s.", "sysvisor.p.", "sysvisor.mntns")}
        finally:
            if fleet is not None:
                fleet.stop()
            # Their sessions close and leave the store; then an ordinary stop.
            deadline = time.monotonic() + 10
            while host.stored("sysvisor.l.") and time.monotonic() < deadline:
                time.sleep(0.05)
            self.stop_daemon()
            host.close()
            self.start_daemon()  # as the other scenarios expect it
        marks = self.daemon_records(audit_at)
        ok_term = sum(1 for a, b in zip(marks, marks[1:]) if a == ("handover", "stop", count) and b == ("start", "", count))
        # A killed daemon writes nothing: its successor's start record is the mark.
        ok_kill = sum(1 for a, b in zip(marks, marks[1:]) if a[0] == "start" and b == ("start", "", count))
        problems = self.log_problems(log_at)
        self.record_restart("8t", f"fd store restart (SIGTERM), {count} idle: ms", term, count, ok_term,
                            stored_fds=stored, daemon_log_problems=problems[:10])
        self.record_restart("8k", f"fd store restart (kill -9), {count} idle: ms", kill, count, ok_kill)
        if problems:
            print(f"  (scenario 8: {len(problems)} error/warning line(s) in the daemon log, first: {problems[0]})")


def fmt(v):
    if isinstance(v, (int, float)) and v >= 1e6:
        return f"{v:.3g}"
    if isinstance(v, float) and v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {"kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gib": round(mem_kib / (1 << 20), 1), "loadavg": os.getloadavg()[0]}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default="build/bin", help="where sysvisor, sysvisor-agent, bench_* are")
    ap.add_argument("--json", default="build/bench.json", help="where to write the results")
    ap.add_argument("--runs", type=int, default=5, help="repeats per scenario (3 uses runs-2, 5 uses 6*runs)")
    ap.add_argument("--quick", action="store_true", help="one short run of each scenario (smoke test)")
    ap.add_argument("--only", default="", help="comma-separated scenarios to run (1,2,3,4,5,6,7,8)")
    ap.add_argument("--containers", type=int, default=0, help="idle containers in scenarios 6 and 8 (default 1000)")
    ap.add_argument("--daemon-nice", type=int, default=0,
                    help="run the daemon at this nice value (an experiment; the table says so)")
    ap.add_argument("--daemon-wrapper", default="",
                    help="a command that execs the daemon in place (env, nice, taskset, chrt): experiments")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument("--daemon-log-level", default="info",
                    help="the daemon's --log-level (debug: timestamps of a restart's steps in daemon.log)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("run as root: the daemon and the native baseline need it")
    b = Bench(args)
    m = machine()
    started = time.monotonic()
    print(f"machine: Linux {m['kernel']}, {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
          f"load {m['loadavg']:.2f}" + (f"; daemon at nice {args.daemon_nice}" if args.daemon_nice else "")
          + (f"; daemon wrapper `{args.daemon_wrapper}`" if args.daemon_wrapper else ""))
    only = set(args.only.split(",")) if args.only else {"1", "2", "3", "4", "5", "6", "7", "8"}
    try:
        b.setup()
        m["sync_wakeup"] = b.sync_wakeup
        print(f"  (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP {'available' if b.sync_wakeup else 'unavailable'})")
        print(f"  {'id':<6} {'figure':<50} {'measured':>12} {'baseline':>12} {'ratio':>7}  {'target':<10} result")
        for sid, fn in (("1", b.s1_deny), ("2", b.s2_mknod), ("3", b.s3_throughput), ("4", b.s4_fairness),
                        ("5", b.s5_untrapped), ("7", b.s7_slow_flood), ("6", b.s6_scale),
                        ("8", b.s8_restart)):
            if sid in only:
                try:
                    fn()
                except (ScenarioError, subprocess.TimeoutExpired) as e:
                    print(f"  {sid:<6} ERROR: {e}", flush=True)
                    b.results.append({"id": sid, "error": str(e), "pass": False})
    finally:
        b.cleanup()
    elapsed = time.monotonic() - started
    missed = [r["id"] for r in b.results if r["pass"] is False and "error" not in r]
    errors = [r["id"] for r in b.results if "error" in r]
    print(f"{len(missed)} target(s) missed{': ' + ', '.join(missed) if missed else ''}; {elapsed:.0f} s")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"machine": m, "quick": args.quick, "daemon_nice": args.daemon_nice, "daemon_wrapper": args.daemon_wrapper, "runs": b.runs, "seconds": round(elapsed, 1),
                   "results": b.results}, f, indent=2)
    print(f"wrote {args.json}")
    if errors:
        die(f"scenario(s) {', '.join(errors)} could not run (--keep keeps the logs)")


if __name__ == "__main__":
    main()
