#!/usr/bin/env bash
# Start (or reuse) a private PostgreSQL for development and print its DATABASE_URL:
#   eval "$(scripts/dev-db.sh)"      # then swift test / .build/debug/atlas-secrets …
#   scripts/dev-db.sh stop           # stop it (its data stays under .data/dev)
# Port: DEV_PG_PORT (default 25499). On failure it prints `false`, so the eval fails too.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ "${1:-}" = stop ]; then
    pg_stop dev
    exit 0
fi
trap 'echo false' ERR
ensure_packages
pg_start dev "${DEV_PG_PORT:-25499}" fast
echo "export DATABASE_URL='$DATABASE_URL'"
