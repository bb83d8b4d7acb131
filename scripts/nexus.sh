#!/usr/bin/env bash
# Installs what the project needs, then runs a deno task from deno.json.
#
#   bash scripts/nexus.sh <task> [args...]     (npm start / npm test call this)
#
# `npm start` runs the task `stack` (scripts/stack.ts: the whole system on this
# machine) and `npm test` the task `test`; arguments after `--` are passed on,
# e.g. `npm start -- --verbose`.
#
# Needs only Node, npm and apt on the machine. It installs, when missing:
#   - Debian packages: softhsm2 (PKCS#11 token for tests and the local stack), opensc
#     (pkcs11-tool, for operator-made keys), and curl, redis-server and
#     redis-tools (real clients and backends for the portal tests), postgresql
#     and postgresql-client (a throwaway PostgreSQL server per test run,
#     tests/support/postgres.ts), and stunnel4, socat and iperf3 (the TLS tunnel
#     and the throughput client and server of bench:compare and its test);
#   - npm dependencies with `npm ci` from the committed package-lock.json, which
#     also builds the pkcs11js native addon;
#   - the pinned Deno, from the npm registry into .tools/deno (manifest and lock
#     in scripts/toolchain/), unless `deno` on PATH is that version.
# The Deno binary is kept out of node_modules/.bin on purpose: `deno task` puts
# that folder first on PATH and would run the npm shim as a script.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf '[nexus setup] %s\n' "$*" >&2; }

pinned_deno=$(node -p 'require("./scripts/toolchain/package.json").dependencies.deno')

# 1. Debian packages.
apt_needed=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] || apt_needed+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || apt_needed+=(opensc)
# Real clients and backends the tests drive through portals.
command -v curl >/dev/null 2>&1 || apt_needed+=(curl)
command -v redis-server >/dev/null 2>&1 || apt_needed+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || apt_needed+=(redis-tools)
# The other ends of `deno task bench:compare` (tests/bench_compare_test.ts): a TLS tunnel
# (stunnel4, socat in its middle) and a throughput client and server (iperf3).
command -v stunnel4 >/dev/null 2>&1 || apt_needed+=(stunnel4)
command -v socat >/dev/null 2>&1 || apt_needed+=(socat)
command -v iperf3 >/dev/null 2>&1 || apt_needed+=(iperf3)
# PostgreSQL (Debian's, 15 on bookworm): tests/support/postgres.ts makes a fresh cluster
# per test run with initdb/pg_ctl from /usr/lib/postgresql/<major>/bin, for the portal
# end-to-end test (the real psql client through a tunnel to it) and for the credential
# authority's state kept in PostgreSQL with replicas. The versioned binaries are what the
# tests run (/usr/bin/psql alone is only postgresql-client-common's wrapper), so check those.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_needed+=(postgresql)
compgen -G '/usr/lib/postgresql/*/bin/psql' >/dev/null || apt_needed+=(postgresql-client)
# The deployment test checks the systemd units offline with systemd-analyze.
command -v systemd-analyze >/dev/null 2>&1 || apt_needed+=(systemd)
if [ "${#apt_needed[@]}" -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      say "need root (or sudo) to install: ${apt_needed[*]}"; exit 1
    fi
  fi
  say "installing Debian packages: ${apt_needed[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${apt_needed[@]}" >/dev/null
  say "Debian packages installed"
fi

# 2. npm dependencies (and the pinned Deno, and the pkcs11js addon build).
stamp=node_modules/.nexus-installed
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp" \
  || [ ! -f node_modules/pkcs11js/build/Release/pkcs11.node ]; then
  say "installing npm dependencies (npm ci; builds the pkcs11js addon)"
  npm ci --no-audit --no-fund --loglevel=error >&2
  cp package-lock.json "$stamp"
  say "npm dependencies installed"
fi

# 3. Deno: the one on PATH if it is the pinned version, else the project-local one.
deno_bin=""
if command -v deno >/dev/null 2>&1; then
  have=$(deno --version 2>/dev/null | awk 'NR==1{print $2}')
  [ "$have" = "$pinned_deno" ] && deno_bin=$(command -v deno)
fi
if [ -z "$deno_bin" ]; then
  tools=.tools/deno
  if [ ! -x .tools/bin/deno ] || ! cmp -s scripts/toolchain/package-lock.json "$tools/package-lock.json"; then
    say "installing Deno $pinned_deno into $tools (npm ci)"
    rm -rf "$tools" .tools/bin
    mkdir -p "$tools" .tools/bin
    cp scripts/toolchain/package.json scripts/toolchain/package-lock.json "$tools/"
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >&2)
    # The platform package holds the real binary; link it, not the npm shim.
    real=$(find "$tools/node_modules/@deno" -maxdepth 2 -type f -name deno | head -n 1)
    [ -n "$real" ] || { say "no Deno binary for this platform in $tools"; exit 1; }
    ln -sf "$root/$real" .tools/bin/deno
    say "Deno $("$root/.tools/bin/deno" --version | awk 'NR==1{print $2}') installed"
  fi
  deno_bin="$root/.tools/bin/deno"
fi
export DENO_NO_UPDATE_CHECK=1
export NEXUS_DENO="$deno_bin"

if [ "$#" -eq 0 ]; then
  echo "$deno_bin"
  exit 0
fi
exec "$deno_bin" task -q "$@"
