#!/usr/bin/env bash
# Start (or reuse) a private PostgreSQL for development and print its DATABASE_URL.
#   eval "$(scripts/dev-db.sh)"      # then swift test / .build/debug/atlas-secrets …
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_packages
pg_start dev "${DEV_PG_PORT:-25499}" fast
echo "export DATABASE_URL='$DATABASE_URL'"
