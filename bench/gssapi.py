#!/usr/bin/env python3
"""What Kerberos costs: the bind, and a full refresh through each SASL GSSAPI security layer
(confidentiality wraps and encrypts every message), against the same refresh with a simple bind
and against `ldapsearch -Y GSSAPI -E sync=ro` in the same run.

Run it through bench/run.sh, which builds the binaries. One throwaway MIT realm and one slapd
(the testkit's `slapd --gssapi` launcher) serve every client.
"""

import argparse
import os
import shutil
import subprocess

from bench import FILTER, Server, measured, median


def kerberos_env(info):
    """The reader's ticket and the realm's configuration, and nothing from the system's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5")}
    missing = os.path.join(info["dir"], "no-such.keytab")
    env.update(
        KRB5_CONFIG=info["krb5_config"],
        KRB5CCNAME="FILE:" + info["ccache"],
        KRB5_CLIENT_KTNAME=missing,
        KRB5_KTNAME=missing,
        BENCH_PW=info["reader_pw"],
    )
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[10000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--syncrepl", required=True)
    parser.add_argument("--launcher", required=True)
    args = parser.parse_args()
    for n in args.sizes:
        server = Server(args.launcher, n, 100, ["--gssapi"])
        try:
            env = kerberos_env(server.info)
            # The ccache as kinit left it (a TGT only), to bind once with a TGS request included.
            pristine = server.info["ccache"] + ".pristine"
            shutil.copyfile(server.info["ccache"], pristine)
            fresh = server.info["ccache"] + ".fresh"
            host_url = server.url.replace("127.0.0.1", "localhost")
            search = f"{host_url}/{server.base}??sub?{FILTER}"
            one = f"{host_url}/{server.base}??base?(objectClass=*)"
            simple = ["-D", server.info["reader_dn"], "--password-env", "BENCH_PW",
                      "--allow-cleartext-password"]
            ours = [args.syncrepl, "watch", "--refresh-only", "--retry", "none"]
            tool = ["ldapsearch", "-LLL", "-N", "-Q", "-Y", "GSSAPI", "-H", host_url,
                    "-b", server.base]
            clients = [
                ("bind + base search", "syncrepl, simple bind", ours + simple + [one]),
                ("bind + base search", "syncrepl, GSSAPI", ours + ["-Y", "GSSAPI", one]),
                ("bind + base search", "syncrepl, GSSAPI, TGS request",
                 ours + ["-Y", "GSSAPI", one]),
                ("bind + base search", "ldapwhoami -Y GSSAPI",
                 ["ldapwhoami", "-N", "-Q", "-Y", "GSSAPI", "-H", host_url]),
                (f"refresh {n}", "syncrepl, simple bind", ours + simple + [search]),
                (f"refresh {n}", "syncrepl, GSSAPI no layer",
                 ours + ["-Y", "GSSAPI", "-O", "maxssf=0", search]),
                (f"refresh {n}", "syncrepl, GSSAPI integrity",
                 ours + ["-Y", "GSSAPI", "-O", "maxssf=1", search]),
                (f"refresh {n}", "syncrepl, GSSAPI confidentiality", ours + ["-Y", "GSSAPI", search]),
                (f"refresh {n}", "ldapsearch -Y GSSAPI no layer",
                 tool + ["-O", "maxssf=0", "-E", "!sync=ro", FILTER]),
                (f"refresh {n}", "ldapsearch -Y GSSAPI confidentiality",
                 tool + ["-E", "!sync=ro", FILTER]),
            ]
            results = {}
            for scenario, name, argv in clients:
                runs = []
                for _ in range(args.runs):
                    run_env = env
                    if name.endswith("TGS request"):
                        shutil.copyfile(pristine, fresh)
                        run_env = dict(env, KRB5CCNAME="FILE:" + fresh)
                    runs.append(measured(argv, env=run_env))
                results[(scenario, name)] = runs
        finally:
            server.stop()
        print(f"N = {n}: GSSAPI binds and refreshes (medians of {args.runs} runs)", flush=True)
        reference = {
            "bind + base search": ("bind + base search", "syncrepl, simple bind"),
            f"refresh {n}": (f"refresh {n}", "ldapsearch -Y GSSAPI confidentiality"),
        }
        for (scenario, name), runs in results.items():
            wall = median([m.wall for m in runs])
            cpu = median([m.cpu for m in runs])
            ref = median([m.wall for m in results[reference[scenario]]])
            print(
                f"  {scenario:<20} {name:<38} wall {wall:7.3f} s  cpu {cpu:7.3f} s"
                f"  wall / {reference[scenario][1]}: {wall / ref:5.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"bench: {e}")
