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
swift build --build-tests
log "running the tests"
swift test --skip-build "$@"
log "tests passed in $(( $(date +%s) - started )) s"
