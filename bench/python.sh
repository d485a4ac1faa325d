#!/usr/bin/env bash
# Builds syncrepl_client (release) into target/bench/venv-ours, python-ldap and the old
# syncrepl_client 0.95 into target/bench/venv, then runs bench/python.py (N = 100,000 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/sbin:$PATH"
scripts/install-deps
cargo build --quiet --release -p syncrepl-testkit --example slapd
theirs=target/bench/venv
if [ ! -x "$theirs/bin/python" ] || ! "$theirs/bin/python" -c 'import ldap' 2>/dev/null; then
    bench/run.sh --help >/dev/null 2>&1 || true
fi
"$theirs/bin/python" -c 'import ldap' || { echo "bench: python-ldap missing (run bench/run.sh once)" >&2; exit 1; }
"$theirs/bin/pip" install --quiet 'syncrepl-client==0.95'
ours=target/bench/venv-ours
[ -x "$ours/bin/python" ] || python3 -m venv "$ours"
"$ours/bin/pip" install --quiet --disable-pip-version-check ./syncrepl-py
exec python3 bench/python.py --launcher target/release/examples/slapd \
    --ours "$ours/bin/python" --theirs "$theirs/bin/python" "$@"
