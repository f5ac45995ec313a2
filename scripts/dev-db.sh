#!/usr/bin/env bash
# Start (or reuse) a private PostgreSQL for development and print its DATABASE_URL:
#   eval "$(scripts/dev-db.sh)"      # then swift test / .build/debug/atlas-secrets …
# Port: DEV_PG_PORT (default 25499). On failure it prints `false`, so the eval fails too.
set -euo pipefail
trap 'echo false' ERR
source "$(dirname "$0")/lib.sh"
ensure_packages
pg_start dev "${DEV_PG_PORT:-25499}" fast
echo "export DATABASE_URL='$DATABASE_URL'"
