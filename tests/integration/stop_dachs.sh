#!/usr/bin/env bash
# Stop the DaCHS server that setup_dachs.sh started; with --postgres, stop
# PostgreSQL too. Safe to run when nothing is running.
#
#   bash tests/integration/stop_dachs.sh [--postgres]
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
else
    as_root() { sudo -n "$@"; }
fi

if command -v dachs >/dev/null 2>&1; then
    if as_root dachs serve stop >/dev/null 2>&1; then
        echo "[stop_dachs] DaCHS server stopped"
    else
        echo "[stop_dachs] no DaCHS server was running"
    fi
else
    echo "[stop_dachs] DaCHS is not installed"
fi

if [ "${1:-}" = "--postgres" ]; then
    if pg_lsclusters --no-header 2>/dev/null | grep -q ' online'; then
        as_root service postgresql stop >/dev/null
        echo "[stop_dachs] PostgreSQL stopped"
    else
        echo "[stop_dachs] PostgreSQL was not running"
    fi
fi
