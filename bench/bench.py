#!/usr/bin/env python3
"""Benchmarks `syncrepl` against the tools people use today, on one throwaway slapd per size.

Run it through bench/run.sh, which builds the binaries and the python-ldap virtualenv. Every client
runs against the same server in the same run; the table gives medians of wall time, client CPU
(user + sys, from wait4) and peak RSS, and ratios against `ldapsearch`, OpenLDAP's C client.
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

FILTER = "(objectClass=inetOrgPerson)"


class Server:
    """A slapd started by the testkit's `slapd` example; it stops when its stdin closes."""

    def __init__(self, launcher, people, sessionlog, extra=()):
        self.proc = subprocess.Popen(
            [launcher, "--people", str(people), "--sessionlog", str(sessionlog), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = {}
        for line in self.proc.stdout:
            line = line.strip()
            if line == "ready":
                break
            key, _, value = line.partition("=")
            self.info[key] = value
        if "url" not in self.info:
            raise SystemExit("the slapd launcher did not start")
        self.url = self.info["url"]
        self.base = self.info["base"]
        self.people = people

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def admin(self):
        return ["-x", "-H", self.url, "-D", self.info["admin_dn"], "-w", self.info["admin_pw"]]

    def reader(self):
        return ["-x", "-H", self.url, "-D", self.info["reader_dn"], "-w", self.info["reader_pw"]]

    def sync_url(self, filterstr=FILTER):
        return f"{self.url}/{self.base}??sub?{filterstr}"

    def context_csn(self):
        """The suffix's contextCSN values, or None while the suffix does not exist."""
        out = subprocess.run(
            ["ldapsearch", "-LLL"] + self.admin() + ["-b", self.base, "-s", "base", "contextCSN"],
            capture_output=True,
            text=True,
        )
        values = sorted(l for l in out.stdout.splitlines() if l.startswith("contextCSN:"))
        return values or None

    def usage(self):
        """CPU seconds and peak RSS (KiB) of the slapd process, from /proc."""
        pid = int(self.info["pid"])
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/status") as f:
            hwm = next(l for l in f if l.startswith("VmHWM:"))
        return cpu, int(hwm.split()[1])


class Measure:
    """Wall time, CPU and peak RSS of one child process."""

    def __init__(self, wall, cpu, rss_kib):
        self.wall, self.cpu, self.rss_kib = wall, cpu, rss_kib


def measured(argv, env=None, stdout=subprocess.DEVNULL):
    """Runs `argv` under GNU time: a child forked from this interpreter would count the
    interpreter's pages in its peak RSS, one forked from `time` counts only its own."""
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name] + argv, stdout=stdout, stderr=err, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
        rss_kib = int(open(rss.name).read().split()[-1])
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {text.strip()}")
    return Measure(wall, usage.ru_utime + usage.ru_stime, rss_kib)


def median(values):
    return statistics.median(values) if values else float("nan")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Bench:
    def __init__(self, args):
        self.args = args
        self.syncrepl = args.syncrepl
        self.python = None if args.no_python else args.python
        self.work = tempfile.mkdtemp(prefix="syncrepl-bench-")
        self.rows = []
        self.notes = []
        self.env = dict(os.environ)

    def cleanup(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def row(self, scenario, client, measures, reference=None, extra=""):
        wall = median([m.wall for m in measures])
        cpu = median([m.cpu for m in measures])
        rss = median([m.rss_kib for m in measures]) / 1024
        row = {
            "scenario": scenario,
            "client": client,
            "runs": len(measures),
            "wall_s": wall,
            "cpu_s": cpu,
            "rss_mib": rss,
            "extra": extra,
        }
        if reference:
            row["wall_ratio"] = wall / reference["wall_s"] if reference["wall_s"] else None
            row["cpu_ratio"] = cpu / reference["cpu_s"] if reference["cpu_s"] else None
        self.rows.append(row)
        ratios = ""
        if reference:
            ratios = f"  wall {row['wall_ratio']:.2f}x  cpu {row['cpu_ratio']:.2f}x"
        print(
            f"  {scenario:<28} {client:<34} wall {wall:7.3f} s  cpu {cpu:7.3f} s"
            f"  rss {rss:7.1f} MiB{ratios} {extra}",
            flush=True,
        )
        return row

    def ldapsearch(self, server, cookie=None, mode="ro"):
        sync = f"!sync={mode}" + (f"/{cookie}" if cookie else "")
        return (
            ["ldapsearch", "-LLL"]
            + server.reader()
            + ["-b", server.base, "-s", "sub", "-E", sync, FILTER]
        )

    def watch(self, server, state=None, extra=(), filterstr=FILTER, persist=False):
        argv = [
            self.syncrepl,
            "watch",
            "-D",
            server.info["reader_dn"],
            "--password-env",
            "BENCH_PW",
            "--allow-cleartext-password",
        ]
        if not persist:
            argv.append("--refresh-only")
        if state:
            argv += ["--state", state]
        return argv + list(extra) + [server.sync_url(filterstr)]

    def wire_bytes(self, server):
        """Bytes the server sends for a full refresh, counted by a relay in front of it."""
        host, port = server.url.removeprefix("ldap://").rsplit(":", 1)
        listener = socket.create_server(("127.0.0.1", 0))
        relay_port = listener.getsockname()[1]
        counted = [0]

        def pump(src, dst, count):
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if count:
                    counted[0] += len(data)
                dst.sendall(data)
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        def serve():
            client, _ = listener.accept()
            upstream = socket.create_connection((host, int(port)))
            up = threading.Thread(target=pump, args=(client, upstream, False))
            up.start()
            pump(upstream, client, True)
            up.join()
            client.close()
            upstream.close()

        thread = threading.Thread(target=serve)
        thread.start()
        argv = self.ldapsearch(server)
        argv[argv.index(server.url)] = f"ldap://127.0.0.1:{relay_port}"
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        thread.join()
        listener.close()
        return counted[0]

    def full_refresh(self, server):
        n = server.people
        runs = self.args.runs
        self.env["BENCH_PW"] = server.info["reader_pw"]
        wire = self.wire_bytes(server)
        print(f"full refresh, N = {n}: {wire / 2**20:.1f} MiB on the wire", flush=True)
        scenario = f"full refresh N={n}"
        refs = [measured(self.ldapsearch(server), env=self.env) for _ in range(runs)]
        ref = self.row(scenario, "ldapsearch -E sync=ro", refs)
        mem = [measured(self.watch(server), env=self.env) for _ in range(runs)]
        row = self.row(scenario, "syncrepl watch (memory)", mem, ref)
        row["rss_vs_wire"] = row["rss_mib"] * 2**20 / wire
        logs = []
        for i in range(runs):
            state = os.path.join(self.work, f"full-{n}-{i}")
            logs.append(measured(self.watch(server, state), env=self.env))
            if i + 1 < runs:
                shutil.rmtree(state)
        row = self.row(scenario, "syncrepl watch (log, fsync)", logs, ref)
        row["rss_vs_wire"] = row["rss_mib"] * 2**20 / wire
        self.state = os.path.join(self.work, f"full-{n}-{runs - 1}")
        if self.python:
            consumer = os.path.join(os.path.dirname(__file__), "python_consumer.py")
            argv = [self.python, consumer, server.url, server.info["reader_dn"], server.base, FILTER]
            py_runs = 1 if n > 20000 and not self.args.all_python_runs else runs
            self.row(scenario, "python-ldap SyncreplConsumer", [measured(argv, env=self.env) for _ in range(py_runs)], ref)
        else:
            self.notes.append("python-ldap: not measured")
        if not self.args.no_replica:
            self.row(scenario, "OpenLDAP replica (slapd syncrepl)", [self.replica(server)], ref)
        self.wire = wire
        reopen = [measured([self.syncrepl, "status", "--state", self.state]) for _ in range(runs)]
        self.row(f"reopen state N={n}", "syncrepl status", reopen)

    def replica(self, server):
        """OpenLDAP's own consumer: an empty slapd replicating `server`, timed from its start
        until its contextCSN equals the provider's; CPU and peak RSS are the replica slapd's."""
        target = server.context_csn()
        start = time.perf_counter()
        replica = Server(
            self.args.launcher,
            0,
            self.args.sessionlog,
            [
                "--replica-of",
                server.url,
                "--replica-bind",
                server.info["reader_dn"],
                "--replica-password",
                server.info["reader_pw"],
            ],
        )
        try:
            deadline = start + 1200
            while replica.context_csn() != target:
                if time.perf_counter() > deadline:
                    raise SystemExit("the OpenLDAP replica did not catch up within 20 minutes")
                time.sleep(0.02)
            wall = time.perf_counter() - start
            cpu, rss_kib = replica.usage()
        finally:
            replica.stop()
        return Measure(wall, cpu, rss_kib)

    def cookie(self, state):
        out = subprocess.run(
            [self.syncrepl, "status", "--state", state], capture_output=True, text=True, check=True
        ).stdout
        match = re.search(r"^cookie:\s+(\S+)", out, re.M)
        if not match or match.group(1) == "none":
            raise SystemExit(f"no cookie in {state}")
        return match.group(1)

    def changes(self, server, count, rng, alive, next_uid):
        """LDIF for `count` changes: mostly modifies, some adds, deletes and renames."""
        records = []
        for _ in range(count):
            roll = rng.random()
            if roll < 0.1:
                uid = f"bench{next_uid[0]:07d}"
                next_uid[0] += 1
                records.append(
                    f"dn: uid={uid},ou=people,{server.base}\nchangetype: add\n"
                    f"objectClass: inetOrgPerson\nuid: {uid}\ncn: Bench {uid}\nsn: {uid}\n"
                )
                alive.append(uid)
            elif roll < 0.2 and len(alive) > 1:
                uid = alive.pop(rng.randrange(len(alive)))
                records.append(f"dn: uid={uid},ou=people,{server.base}\nchangetype: delete\n")
            elif roll < 0.3:
                i = rng.randrange(len(alive))
                uid = alive[i]
                new = f"{uid}r"
                alive[i] = new
                records.append(
                    f"dn: uid={uid},ou=people,{server.base}\nchangetype: modrdn\n"
                    f"newrdn: uid={new}\ndeleteoldrdn: 1\n"
                )
            else:
                uid = alive[rng.randrange(len(alive))]
                records.append(
                    f"dn: uid={uid},ou=people,{server.base}\nchangetype: modify\n"
                    f"replace: description\ndescription: change {rng.random()}\n-\n"
                )
        ldif = os.path.join(self.work, "changes.ldif")
        with open(ldif, "w") as f:
            f.write("\n".join(records))
        subprocess.run(["ldapmodify"] + server.admin() + ["-f", ldif], stdout=subprocess.DEVNULL, check=True)

    def incremental(self, server):
        n = server.people
        runs = self.args.runs
        rng = random.Random(4533)
        alive = [f"user{i:05d}" for i in range(1, n + 1)]
        next_uid = [0]
        self.alive = alive
        cookie = self.cookie(self.state)
        done = 0
        for total in (self.args.sessionlog, 3 * self.args.sessionlog):
            self.changes(server, total - done, rng, alive, next_uid)
            done = total
            scenario = f"incremental N={n} +{total}"
            refs = [measured(self.ldapsearch(server, cookie), env=self.env) for _ in range(runs)]
            ref = self.row(scenario, "ldapsearch -E sync=ro/cookie", refs)
            ours = []
            printed = 0
            for i in range(runs):
                state = os.path.join(self.work, f"incr-{n}-{total}-{i}")
                shutil.copytree(self.state, state)
                # A state at rest has long been written back; a fresh copy's dirty pages would
                # make the first fsync pay for writing the whole log.
                os.sync()
                out = os.path.join(self.work, "incr.out")
                with open(out, "wb") as f:
                    ours.append(measured(self.watch(server, state), env=self.env, stdout=f))
                with open(out, "rb") as f:
                    printed = sum(1 for _ in f)
                shutil.rmtree(state)
            self.row(scenario, "syncrepl watch (log, opens state)", ours, ref, f"[{printed} changes printed]")

    def persist_latency(self, server, count):
        """Time from writing a change to the server to the line that reports it on stdout."""
        results = {}
        self.env["BENCH_PW"] = server.info["reader_pw"]
        clients = [
            ("ldapsearch -E sync=rp", None),
            ("syncrepl watch (memory)", []),
            ("syncrepl watch (log, fsync always)", ["--fsync", "always"]),
            ("syncrepl watch (log, fsync group)", ["--fsync", "group"]),
            ("syncrepl watch (log, fsync never)", ["--fsync", "never"]),
        ]
        for round_no, (name, extra) in enumerate(clients):
            tag = f"lat{round_no}x"
            filterstr = f"(description={tag}*)"
            if extra is None:
                argv = ["stdbuf", "-oL"] + self.ldapsearch(server, mode="rp")
                argv[-1] = filterstr
                pattern = re.compile(r"^dn: uid=(\S+?),")
            else:
                state = None
                if extra:
                    state = os.path.join(self.work, f"persist-{round_no}")
                argv = self.watch(server, state, extra, filterstr, persist=True)
                pattern = re.compile(r"^add\s+uid=(\S+?),")
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env
            )
            seen = {}
            cond = threading.Condition()

            def read(stream=proc.stdout, seen=seen, cond=cond, pattern=pattern):
                for raw in stream:
                    now = time.perf_counter()
                    match = pattern.match(raw.decode(errors="replace"))
                    if match:
                        with cond:
                            seen[match.group(1)] = now
                            cond.notify_all()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            modify = subprocess.Popen(
                ["ldapmodify", "-c"] + server.admin(),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )
            time.sleep(0.5)
            latencies = []
            for i in range(count):
                uid = self.alive[i % len(self.alive)]
                record = (
                    f"dn: uid={uid},ou=people,{server.base}\nchangetype: modify\n"
                    f"replace: description\ndescription: {tag}{i}\n-\n\n"
                )
                start = time.perf_counter()
                modify.stdin.write(record)
                modify.stdin.flush()
                with cond:
                    if not cond.wait_for(lambda uid=uid: uid in seen, timeout=10):
                        raise SystemExit(f"{name}: no output for {uid} within 10 s")
                    latencies.append(seen.pop(uid) - start)
            modify.stdin.close()
            modify.wait(timeout=30)
            proc.terminate()
            proc.wait(timeout=30)
            lat_ms = [x * 1000 for x in latencies]
            results[name] = lat_ms
            print(
                f"  persist latency {name:<36} median {median(lat_ms):6.2f} ms"
                f"  p99 {percentile(lat_ms, 99):6.2f} ms  max {max(lat_ms):6.2f} ms ({count} changes)",
                flush=True,
            )
            self.rows.append(
                {
                    "scenario": f"persist latency ({count} changes)",
                    "client": name,
                    "median_ms": median(lat_ms),
                    "p99_ms": percentile(lat_ms, 99),
                    "max_ms": max(lat_ms),
                }
            )
        return results


    def burst(self, server, count):
        """A burst of `count` modifies sent with one ldapmodify: time from its start until the
        last one is reported on stdout, by a persist-mode client already past its refresh."""
        self.env["BENCH_PW"] = server.info["reader_pw"]
        clients = [
            ("ldapsearch -E sync=rp", None),
            ("syncrepl watch (log, fsync always)", ["--fsync", "always"]),
            ("syncrepl watch (log, fsync never)", ["--fsync", "never"]),
        ]
        times = {}
        for round_no, (name, extra) in enumerate(clients):
            tag = f"burst{round_no}x"
            filterstr = f"(description={tag}*)"
            last = f"{tag}{count - 1}"
            if extra is None:
                argv = ["stdbuf", "-oL"] + self.ldapsearch(server, mode="rp")
                argv[-1] = filterstr
            else:
                state = os.path.join(self.work, f"burst-{round_no}")
                argv = self.watch(server, state, list(extra) + ["--format", "ldif"], filterstr, persist=True)
            # The entries enter the filter with the first change: every later change is a modify.
            ldif = "".join(
                f"dn: uid={self.alive[i % len(self.alive)]},ou=people,{server.base}\n"
                f"changetype: modify\nreplace: description\ndescription: {tag}{i}\n-\n\n"
                for i in range(count)
            )
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env
            )
            done = threading.Event()

            def read(stream=proc.stdout, done=done, last=last):
                for raw in stream:
                    if last in raw.decode(errors="replace"):
                        done.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            time.sleep(1.0)
            start = time.perf_counter()
            subprocess.run(
                ["ldapmodify", "-c"] + server.admin(),
                input=ldif,
                text=True,
                stdout=subprocess.DEVNULL,
                check=True,
            )
            if not done.wait(timeout=120):
                raise SystemExit(f"{name}: the last change of the burst never arrived")
            elapsed = time.perf_counter() - start
            proc.terminate()
            proc.wait(timeout=30)
            times[name] = elapsed
            ref = times[clients[0][0]]
            print(
                f"  burst of {count} modifies, {name:<36} {elapsed:6.3f} s ({elapsed / ref:.2f}x ldapsearch)",
                flush=True,
            )
            self.rows.append(
                {
                    "scenario": f"burst of {count} modifies",
                    "client": name,
                    "wall_s": elapsed,
                    "ratio": elapsed / ref,
                }
            )
        return times


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[10000, 100000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessionlog", type=int, default=1000)
    parser.add_argument("--latency-changes", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=5000, help="modifies in the burst scenario")
    parser.add_argument("--syncrepl", required=True)
    parser.add_argument("--launcher", required=True)
    parser.add_argument("--python", help="the virtualenv's python, with python-ldap")
    parser.add_argument("--all-python-runs", action="store_true")
    parser.add_argument("--no-python", action="store_true", help="leave python-ldap out")
    parser.add_argument("--no-replica", action="store_true", help="leave the OpenLDAP replica out")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    bench = Bench(args)
    try:
        for n in args.sizes:
            server = Server(args.launcher, n, args.sessionlog)
            try:
                print(f"slapd with {n} people started in {server.info.get('start_s')} s", flush=True)
                bench.full_refresh(server)
                bench.incremental(server)
                if n == args.sizes[0]:
                    bench.persist_latency(server, args.latency_changes)
                    bench.burst(server, args.burst)
            finally:
                server.stop()
    finally:
        bench.cleanup()
    for note in bench.notes:
        print(note)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": bench.rows, "notes": bench.notes}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
