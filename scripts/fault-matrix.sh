#!/usr/bin/env bash
# Runs the fault scenarios RUNS times (default 20) and writes the results
# table to docs/fault-matrix.md: per scenario the runs, failures, the
# largest fencing gap (the old primary's last acknowledged write to the new
# primary's first), acknowledged writes lost, and promotions.
#
#   scripts/fault-matrix.sh [RUNS] [NEXTEST-FILTER]
#
# The default filter is every scenario of tests/faults.rs but the nemesis
# run (run `haraft-nemesis` for long nemesis runs). Needs what the tests
# need: PostgreSQL 15 and, as root, the postgres OS user.
set -euo pipefail
runs=${1:-20}
filter=${2:-'binary(faults) & not test(nemesis)'}
cd "$(dirname "$0")/.."
cargo build --workspace --locked --quiet
logs=$(mktemp -d)
for i in $(seq 1 "$runs"); do
  echo "run $i of $runs" >&2
  cargo nextest run --workspace --locked --no-fail-fast --no-capture -E "$filter" >"$logs/run$i.log" 2>&1 || true
done
mkdir -p docs
python3 scripts/fault-matrix-table.py "$logs" "$runs" "$filter" >docs/fault-matrix.md
echo "wrote docs/fault-matrix.md (logs in $logs)" >&2
