#!/usr/bin/env bash
# Benchmarks syncrepl against ldapsearch, python-ldap and an OpenLDAP replica on throwaway slapd
# servers, then GSSAPI binds and layers (bench/gssapi.py), the JetStream fan-out (bench/nats.py)
# the resume from two multi-provider slapds (bench/multiprovider.py), and Active Directory through
# DirSync on a Samba AD DC (bench/ad.py).
#   bench/run.sh                 N = 10,000 and 100,000, three runs each
#   bench/run.sh 1000000         a longer run
#   bench/run.sh --smoke         N = 1,000, one run, small change counts (what CI runs)
# Other options go to bench/bench.py (--runs, --sessionlog, --latency-changes, --no-python,
# --no-replica, --json FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/sbin:$PATH"

args=()
smoke=""
for arg in "$@"; do
    if [ "$arg" = "--smoke" ]; then
        smoke=1
        args+=(1000 --runs 1 --sessionlog 100 --latency-changes 100 --burst 300)
    else
        args+=("$arg")
    fi
done

# The smoke run checks that the script works, not how fast: the test suite's debug build will do.
profile=release
[ -n "$smoke" ] && profile=debug
build=(--quiet)
[ "$profile" = release ] && build+=(--release)

scripts/install-deps
echo "building syncrepl and the slapd launcher ($profile)…" >&2
cargo build "${build[@]}" --bin syncrepl
cargo build "${build[@]}" -p syncrepl-testkit --example slapd --example providers

python=()
venv=target/bench/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import ldap' 2>/dev/null; then
    if ! dpkg -s libldap2-dev libsasl2-dev >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            libldap2-dev libsasl2-dev >/dev/null || true
    fi
    rm -rf "$venv"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q python-ldap; } >&2; then
        rm -rf "$venv"
        if [ -z "$smoke" ]; then
            echo "bench: could not build the python-ldap virtualenv" >&2
            exit 1
        fi
        echo "bench: python-ldap unavailable; the smoke run goes on without it" >&2
    fi
fi
[ -x "$venv/bin/python" ] && python=(--python "$venv/bin/python")

python3 bench/bench.py --syncrepl "target/$profile/syncrepl" \
    --launcher "target/$profile/examples/slapd" "${python[@]}" "${args[@]}"

# Kerberos: the bind and a refresh through each SASL GSSAPI security layer.
gssapi_args=(10000)
[ -n "$smoke" ] && gssapi_args=(1000 --runs 1)
python3 bench/gssapi.py --syncrepl "target/$profile/syncrepl" \
    --launcher "target/$profile/examples/slapd" "${gssapi_args[@]}"

# Fan-out: a refresh published to JetStream against watch --state, and the persist latency to a
# JetStream consumer.
nats_args=(100000 --runs 3 --latency-changes 300)
[ -n "$smoke" ] && nats_args=(1000 --runs 1 --latency-changes 20)
cargo build "${build[@]}" -p syncrepl-nats --bins --examples
python3 bench/nats.py --syncrepl "target/$profile/syncrepl" --nats-bin "target/$profile/syncrepl-nats" \
    --floor-bin "target/$profile/examples/jetstream_floor" \
    --launcher "target/$profile/examples/slapd" "${nats_args[@]}"

# Two multi-provider slapds: what a resume costs with the cookie as last sent and as kept.
providers_sizes=(2000 100000)
[ -n "$smoke" ] && providers_sizes=(1000)
python3 bench/multiprovider.py --syncrepl "target/$profile/syncrepl" \
    --launcher "target/$profile/examples/providers" "${providers_sizes[@]}"

# Active Directory: a DirSync full mirror against ldapsearch's DirSync in the same run, and the live
# latency against a bare change-notification search.
ad_args=(10000 --runs 3 --latency-changes 200)
[ -n "$smoke" ] && ad_args=(300 --runs 1 --latency-changes 20)
cargo build "${build[@]}" -p syncrepl-testkit --bin samba-dc
python3 bench/ad.py --syncrepl "target/$profile/syncrepl" --launcher "target/$profile/samba-dc" \
    "${ad_args[@]}"
