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
python3 - "$logs" "$runs" "$filter" >docs/fault-matrix.md <<'PY'
import json, re, sys, glob, datetime, platform, os
logs, runs, flt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = {}
for path in sorted(glob.glob(f"{logs}/run*.log")):
    pending = []
    for line in open(path, errors="replace"):
        m = re.search(r"FAULT-REPORT (\{.*\})", line)
        if m:
            pending.append(json.loads(m.group(1)))
            continue
        m = re.match(r"\s+(PASS|FAIL|TIMEOUT|SIGSEGV|SIGABRT) \[.*\] \(.*\) (\S+) (\S+)$", line)
        if not m:
            continue
        status, test = m.group(1), m.group(3)
        r = rows.setdefault(test, {"runs": 0, "failures": 0, "gap": None, "lost": 0, "promotions": 0, "scenario": None})
        r["runs"] += 1
        if status != "PASS":
            r["failures"] += 1
        for p in pending:
            r["scenario"] = p["scenario"]
            if p["fencing_gap_ms"] is not None:
                r["gap"] = max(r["gap"] or 0, p["fencing_gap_ms"])
            r["lost"] += p["lost"]
            r["promotions"] = max(r["promotions"], p["promotions"])
        pending = []
print("# Fault matrix results\n")
print(f"Written by `scripts/fault-matrix.sh {runs}` on {datetime.date.today()} ({platform.machine()}, {os.cpu_count()} cores), filter `{flt}`.")
print("Each scenario is one test of `tests/faults.rs` (real agents and PostgreSQL 15, every link through a chaos proxy, a writer every 10 ms); the invariants are checked in every run (see the test file's header).\n")
print("| scenario (test) | runs | failures | max fencing gap | acknowledged writes lost (all runs) | max promotions in a run |")
print("| --- | --- | --- | --- | --- | --- |")
for test, r in sorted(rows.items()):
    gap = f"{r['gap']} ms" if r["gap"] is not None else "-"
    print(f"| {test} | {r['runs']} | {r['failures']} | {gap} | {r['lost']} | {r['promotions']} |")
PY
echo "wrote docs/fault-matrix.md (logs in $logs)" >&2
