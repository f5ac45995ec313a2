#!/usr/bin/env bash
# Runs every test: installs what is missing, starts a private throwaway PostgreSQL under .data/,
# builds, runs the unit and integration tests (integration tests start atlas-sim themselves).
# Usage: scripts/test.sh [extra `swift test` arguments, e.g. --filter Worker]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
started=$(date +%s)
ensure_swift
ensure_packages
log "starting the test PostgreSQL (.data/test, port ${TEST_PG_PORT:-25433})"
pg_start test "${TEST_PG_PORT:-25433}" fast
trap 'pg_stop test' EXIT
log "building"
# The build's progress lines ([n/m] Compiling …) are dropped; errors and warnings stay.
swift build --build-tests 2>&1 | { grep -Ev '^\[[0-9]+/[0-9]+\]' || true; }
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
log "running the tests"
swift test --skip-build "$@"
log "tests passed in $(( $(date +%s) - started )) s"
