#!/usr/bin/env bash
# Installs what `make run` and `make test` need and a fresh machine may lack. Idempotent: it
# only installs what is missing, so it is cheap to run before every command.
set -euo pipefail

have_postgres_server() {
    local bindir
    bindir=$(pg_config --bindir 2>/dev/null || true)
    [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

apt_updated=no
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing Debian packages: $*; run as root or install them" >&2
        exit 1
    fi
    if [ "$apt_updated" = no ]; then
        apt-get update -qq
        apt_updated=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
if [ -z "${DATABASE_URL:-}" ] && ! have_postgres_server; then
    missing+=(postgresql)
fi
if ! command -v setpriv >/dev/null; then
    missing+=(util-linux)
fi
# Prometheus and promtool: the local SRE view of `make run` and the alert rule tests. Only the
# binaries are used (the stack runs its own Prometheus on a free port). Without an init system
# (containers, CI) apt starts no service; under systemd Debian's own unit starts on :9090,
# unused by the stack.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    missing+=(prometheus)
fi
# Headless Chromium for the console dashboard screenshot test.
if ! command -v chromium >/dev/null; then
    missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
fi

# FerretDB is built from the Go module proxy by the harness (tools/ferretdb/); it needs Go.
if [ -z "${MONGODB_URI:-}" ] && [ -z "${FERRETDB_BIN:-}" ] \
    && ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
    echo "install-deps: Go 1.22+ is needed to build FerretDB (or set MONGODB_URI)" >&2
    exit 1
fi
