#!/usr/bin/env bash
# Runs the fault scenarios RUNS times (default 20) and writes the results
# table to docs/fault-matrix.md: per scenario the runs, failures, the
# largest fencing gap (the old primary's last acknowledged write to the new
# primary's first), acknowledged writes lost, and promotions.
#
#   scripts/fault-matrix.sh [RUNS] [NEXTEST-FILTER]
#
# The default filter is every fault scenario: tests/faults.rs but the
# nemesis run (run `haraft-nemesis` for long nemesis runs), the fault
# scenarios of tests/postgres.rs and the switchover crash points of
# tests/operations.rs. Each round's log is kept in
# target/fault-matrix/COMMIT/, so an interrupted series resumes at the same
# commit. Needs what the tests need: PostgreSQL 15 and, as root, the
# postgres OS user.
set -euo pipefail
runs=${1:-20}
default='(binary(faults) & not test(nemesis)) | (binary(postgres) & (test(bootstrap_failover) | test(killed_postgres) | test(frozen) | test(synchronous_mode_loses))) | (binary(operations) & test(crashes))'
filter=${2:-$default}
cd "$(dirname "$0")/.."
commit=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain -- crates tests Cargo.lock)" ]; then
    echo "uncommitted changes under crates/ or tests/: commit first, the results name a commit" >&2
    exit 2
fi
cargo build --workspace --locked --quiet
logs=target/fault-matrix/$commit
mkdir -p "$logs"
printf '%s\n' "$filter" >"$logs/filter"
for i in $(seq 1 "$runs"); do
    if [ -f "$logs/run$i.log" ] && grep -q "Summary" "$logs/run$i.log"; then
        continue
    fi
    echo "run $i of $runs ($(date -u +%H:%M:%S))" >&2
    cargo nextest run --workspace --locked --no-fail-fast --no-capture -E "$filter" >"$logs/run$i.log.part" 2>&1 || true
    mv "$logs/run$i.log.part" "$logs/run$i.log"
done
mkdir -p docs
python3 scripts/fault-matrix-table.py "$logs" "$runs" "$filter" "$commit" >docs/fault-matrix.md
echo "wrote docs/fault-matrix.md (logs in $logs)" >&2
