#!/usr/bin/env bash
# PostgreSQL for the cluster-mode tests (tests/test_cluster.py) and `qsflow cluster up`: installs Debian's
# postgresql when initdb is missing and this is root with apt-get. Nothing is started here (the package's own
# cluster is left stopped where policy-rc.d allows): deployments/local_cluster.py runs `initdb` into a temporary
# directory and a private server on 127.0.0.1, and stops it.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/postgres.sh: PostgreSQL is not installed and cannot be installed here (needs root and apt-get);" \
         "the cluster tests will skip." >&2
    exit 0
fi
# Keep the package from starting a system-wide server (qsflow starts its own, on a free port).
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
fi
trap '[ -z "$guard" ] || rm -f "$guard"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
echo "scripts/postgres.sh: installed $(ls -d /usr/lib/postgresql/*/bin/initdb | tail -1)"
