#!/usr/bin/env python3
"""Aggregates the logs of scripts/fault-matrix.sh into a markdown table.

    scripts/fault-matrix-table.py LOGDIR RUNS FILTER COMMIT > docs/fault-matrix.md

Each log is one `cargo nextest run --no-capture` of the scenarios; a
scenario's FAULT-REPORT lines come before its PASS/FAIL line.
"""
import datetime
import glob
import json
import os
import platform
import re
import sys

logs, runs, flt, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = {}
done = sorted(glob.glob(f"{logs}/run*.log"))
for path in done:
    pending = []
    counted = set()  # nextest repeats FAIL lines in its final summary
    for line in open(path, errors="replace"):
        m = re.search(r"FAULT-REPORT (\{.*\})", line)
        if m:
            pending.append(json.loads(m.group(1)))
            continue
        m = re.match(r"\s+(PASS|FAIL|TIMEOUT|SIGSEGV|SIGABRT) \[.*\] \(.*\) (\S+) (\S+)$", line)
        if not m:
            continue
        status, test = m.group(1), m.group(3)
        if test in counted:
            continue
        counted.add(test)
        r = rows.setdefault(test, {"runs": 0, "failures": 0, "gap": None, "lost": 0, "promotions": 0})
        r["runs"] += 1
        if status != "PASS":
            r["failures"] += 1
        for p in pending:
            if p["fencing_gap_ms"] is not None:
                r["gap"] = max(r["gap"] or 0, p["fencing_gap_ms"])
            r["lost"] += p["lost"]
            r["promotions"] = max(r["promotions"], p["promotions"])
        pending = []

print("# Fault matrix results\n")
print(
    f"Written by `scripts/fault-matrix.sh {runs}` on {datetime.date.today()} at commit {commit} "
    f"({platform.machine()}, {os.cpu_count()} cores): {len(done)} rounds of the nextest filter `{flt}`."
)
print(
    "Each scenario is one test (`tests/faults.rs`, with every link between nodes through a chaos proxy; the fault "
    "scenarios of `tests/postgres.rs`; the switchover crash points of `tests/operations.rs`): real agents and "
    "PostgreSQL 15 under a writer; every run checks that no two primaries acknowledged writes in overlapping time "
    "(tenures by server and timeline), that no acknowledged write was lost in synchronous mode (asynchronous "
    "scenarios count what was lost), that the cluster converged to one primary with every member streaming, and "
    "that no agent panicked. The fencing gap is from the old primary's last acknowledged write to the new primary's "
    "first (the largest, for scenarios with several promotions).\n"
)
print("| scenario (test) | runs | failures | max fencing gap | acknowledged writes lost (all runs) | max promotions in a run |")
print("| --- | --- | --- | --- | --- | --- |")
for test, r in sorted(rows.items()):
    gap = f"{r['gap']} ms" if r["gap"] is not None else "-"
    print(f"| {test} | {r['runs']} | {r['failures']} | {gap} | {r['lost']} | {r['promotions']} |")
