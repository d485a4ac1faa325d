#!/usr/bin/env python3
"""A full refresh through Python callbacks: syncrepl_client on our core, against python-ldap's
SyncreplConsumer (dict store) and the old syncrepl_client 0.95 (on python-ldap, shelve store).

The same program (bench/callback_client.py) runs with both syncrepl_client packages, each in its
own virtualenv. Run it through bench/python.sh, which builds both.
"""

import argparse
import os
import shutil
import sys
import tempfile

from bench import Server, measured, median


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[100000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slow-runs", type=int, default=1,
                        help="runs of syncrepl_client 0.95 (about 40 s each at 100,000)")
    parser.add_argument("--launcher", required=True)
    parser.add_argument("--ours", required=True, help="python of the venv with our package")
    parser.add_argument("--theirs", required=True, help="python with python-ldap and 0.95")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    for n in args.sizes:
        server = Server(args.launcher, n, 1000)
        env = dict(os.environ, BENCH_PW=server.info["reader_pw"])
        url = server.sync_url() + "?bindname=" + server.info["reader_dn"].replace(",", "%2C")
        group = [
            "env", "BENCH_FSYNC=group", args.ours, os.path.join(here, "callback_client.py"), url
        ]
        clients = {
            "syncrepl_client (ours)": [args.ours, os.path.join(here, "callback_client.py"), url],
            "ours, --fsync group": group,
            "python-ldap SyncreplConsumer": [
                args.theirs, os.path.join(here, "python_consumer.py"), server.url,
                server.info["reader_dn"], server.base, "(objectClass=inetOrgPerson)",
            ],
            "syncrepl_client 0.95": [args.theirs, os.path.join(here, "callback_client.py"), url],
        }
        results = {}
        try:
            for name, argv in clients.items():
                runs = []
                slow = name.endswith("0.95") and n > 10000
                for _ in range(args.slow_runs if slow else args.runs):
                    state = tempfile.mkdtemp(prefix="syncrepl-bench-py-")
                    try:
                        extra = [os.path.join(state, "data")] if "callback_client" in " ".join(argv) else []
                        runs.append(measured(argv + extra, env=env))
                    finally:
                        shutil.rmtree(state, ignore_errors=True)
                results[name] = runs
        finally:
            server.stop()
        print(f"N = {n}: full refresh through Python callbacks (medians)", flush=True)
        ours = results["syncrepl_client (ours)"]
        ours_wall = median([m.wall for m in ours])
        ours_rss = median([m.rss_kib for m in ours])
        for name, runs in results.items():
            wall = median([m.wall for m in runs])
            cpu = median([m.cpu for m in runs])
            rss = median([m.rss_kib for m in runs]) / 1024
            walls = sorted(m.wall for m in runs)
            print(
                f"  {name:<30} runs {len(runs)}  wall {wall:7.2f} s ({walls[0]:.2f}-{walls[-1]:.2f})"
                f"  cpu {cpu:7.2f} s  rss {rss:7.1f} MiB  ours/this: wall {ours_wall / wall:5.3f}x"
                f"  rss {ours_rss / 1024 / rss:5.3f}x",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
