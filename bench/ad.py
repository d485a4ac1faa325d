#!/usr/bin/env python3
"""Active Directory through DirSync, on a throwaway Samba 4.17 AD DC (the testkit's `samba-dc`
launcher): a full mirror of N users of one OU by `syncrepl watch --refresh-only --state` against
`ldapsearch -E '!dirSync=…'` of the same naming context and attributes in the same run, then the
live latency (change notification, then a DirSync pass) from ldapmodify to the printed change.

Run it through bench/run.sh, which builds the binaries.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time

from bench import measured, median

OU = "OU=Bench,DC=example,DC=test"
ATTRS = ["cn", "description", "telephoneNumber", "sn", "objectClass"]


def start_dc(launcher):
    """The launcher's DC and what it printed: LDAPS_URL, ADMIN_DN, LDAPTLS_CACERT, …"""
    proc = subprocess.Popen(
        [launcher], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    info = {}
    for line in proc.stdout:
        if line.startswith("export "):
            name, _, value = line[len("export "):].strip().partition("=")
            info[name] = shlex.split(value)[0]
        if "LDAPRC" in info:
            break
    if "LDAPRC" not in info:
        raise SystemExit("samba-dc did not start")
    return proc, info


def populate(env, info, n):
    lines = [f"dn: {OU}\nchangetype: add\nobjectClass: organizationalUnit\n"]
    for i in range(n):
        lines.append(
            f"dn: CN=user{i},{OU}\nchangetype: add\nobjectClass: user\nsn: Surname{i}\n"
            f"description: bench user {i}\ntelephoneNumber: +1 555 {i:06d}\n"
        )
    started = time.perf_counter()
    subprocess.run(
        ["ldapmodify", "-H", info["LDAPS_URL"], "-D", info["ADMIN_DN"], "-w", info["ADMIN_PW"]],
        input="\n".join(lines), text=True, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def latency(argv, pattern, env, info, count, round_no):
    """Seconds from a modify's write to ldapmodify until `argv` prints it, per change."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    seen = {}
    cond = threading.Condition()

    def read():
        for raw in proc.stdout:
            now = time.perf_counter()
            match = pattern.match(raw.decode(errors="replace"))
            if match:
                with cond:
                    seen[int(match.group(1))] = now
                    cond.notify_all()

    threading.Thread(target=read, daemon=True).start()
    modify = subprocess.Popen(
        ["ldapmodify", "-H", info["LDAPS_URL"], "-D", info["ADMIN_DN"], "-w", info["ADMIN_PW"]],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )
    time.sleep(1.0)
    out = []
    for i in range(count):
        record = (f"dn: CN=user{i % 50},{OU}\nchangetype: modify\nreplace: description\n"
                  f"description: lat{round_no * count + i}\n-\n\n")
        start = time.perf_counter()
        modify.stdin.write(record)
        modify.stdin.flush()
        with cond:
            tag = round_no * count + i
            if not cond.wait_for(lambda tag=tag: tag in seen, timeout=10):
                raise SystemExit(f"no output for change {tag} within 10 s")
            out.append(seen.pop(tag) - start)
    modify.stdin.close()
    modify.wait(timeout=30)
    proc.terminate()
    proc.wait(timeout=30)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-changes", type=int, default=200)
    parser.add_argument("--syncrepl", required=True)
    parser.add_argument("--launcher", required=True)
    args = parser.parse_args()
    for n in args.sizes:
        dc, info = start_dc(args.launcher)
        work = tempfile.mkdtemp(prefix="syncrepl-bench-ad-")
        try:
            env = dict(os.environ)
            env.update({k: v for k, v in info.items() if k.startswith("LDAP")})
            env["BENCH_PW"] = info["ADMIN_PW"]
            took = populate(env, info, n)
            print(f"Samba AD DC, {n} users in {OU} (added in {took:.1f} s)")
            url = f"{info['LDAPS_URL']}/{OU}?{','.join(ATTRS)}?sub"
            ours = [args.syncrepl, "watch", url, "--refresh-only", "--format", "ldif",
                    "--retry", "none", "-D", info["ADMIN_DN"], "--password-env", "BENCH_PW",
                    "--ca-file", info["LDAPTLS_CACERT"]]
            reference = ["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-H", info["LDAPS_URL"],
                         "-D", info["ADMIN_DN"], "-w", info["ADMIN_PW"],
                         "-E", "!dirSync=-2147483648/0/", "-b", "DC=example,DC=test",
                         "(objectClass=*)"] + ATTRS
            clients = [
                ("ldapsearch -E '!dirSync=…' (naming context)", lambda r: reference),
                ("syncrepl watch --refresh-only --state", lambda r: ours + [
                    "--state", os.path.join(work, f"state-{r}")]),
                ("syncrepl watch --refresh-only (memory)", lambda r: ours),
            ]
            results = {name: [] for name, _ in clients}
            for run in range(args.runs):
                for name, argv in clients:
                    results[name].append(measured(argv(run), env=env))
            base = median([m.wall for m in results[clients[0][0]]])
            for name, runs in results.items():
                wall = median([m.wall for m in runs])
                cpu = median([m.cpu for m in runs])
                rss = median([m.rss_kib for m in runs]) / 1024
                print(f"  full mirror {name:<46} wall {wall:6.3f} s ({wall / base:4.2f}x)"
                      f"  cpu {cpu:6.3f} s  rss {rss:6.1f} MiB")
            watchers = [
                ("ldapsearch -E '!…528' (notification only)",
                 ["stdbuf", "-oL", "ldapsearch", "-LLL", "-o", "ldif-wrap=no",
                  "-H", info["LDAPS_URL"], "-D", info["ADMIN_DN"], "-w", info["ADMIN_PW"],
                  "-E", "!1.2.840.113556.1.4.528", "-b", "DC=example,DC=test",
                  "(objectClass=*)", "description"],
                 re.compile(r"^description: lat(\d+)$")),
                ("syncrepl watch --state (notification + DirSync)",
                 [args.syncrepl, "watch", url, "--state", os.path.join(work, "live"),
                  "--format", "text", "-D", info["ADMIN_DN"], "--password-env", "BENCH_PW",
                  "--ca-file", info["LDAPTLS_CACERT"]],
                 re.compile(r"^modify\s+CN=user\d+,.*description = \[lat(\d+)\]")),
            ]
            for round_no, (name, argv, pattern) in enumerate(watchers):
                lat = latency(argv, pattern, env, info, args.latency_changes, round_no)
                lat = sorted(x * 1000 for x in lat)
                print(f"  live latency {name:<48} median {median(lat):6.2f} ms, "
                      f"p90 {lat[int(0.9 * (len(lat) - 1))]:6.2f} ms ({len(lat)} changes)")
        finally:
            dc.stdin.close()
            dc.wait(timeout=30)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
