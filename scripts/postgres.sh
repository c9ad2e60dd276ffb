#!/usr/bin/env bash
# PostgreSQL for the cluster-mode tests (tests/test_cluster.py) and `qsflow cluster up`: installs Debian's
# postgresql when initdb is missing and this is root with apt-get. Nothing is started here (the package's own
# cluster is left stopped where policy-rc.d allows): deployments/local_cluster.py runs `initdb` into a temporary
# directory and a private server on 127.0.0.1, and stops it.
set -euo pipefail
source "$(dirname "$0")/apt_install.sh"
if command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
can_apt_install postgres.sh PostgreSQL "the cluster tests will skip" || exit 0
apt_install postgresql
echo "scripts/postgres.sh: installed $(ls -d /usr/lib/postgresql/*/bin/initdb | tail -1)"
