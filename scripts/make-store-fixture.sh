#!/usr/bin/env bash
# Makes the data-directory fixture of one haraft release: three lease-only
# agents (no PostgreSQL) of that release run on loopback for a few seconds
# (initialize, grant, renewals), stop, and node1's data directory (its Raft
# store, identity and acknowledged mark) is kept.
#
#   scripts/make-store-fixture.sh HARAFT_BINARY OUT_DIR
#
# e.g. for a release built by `haraft-bench upgrade --from COMMIT`:
#   scripts/make-store-fixture.sh target/upgrade/COMMIT/target/release/haraft \
#       crates/raft/tests/fixtures/store-0.2.0
# then add the release to `FIXTURES` in crates/raft/tests/upgrade.rs.
# Every release adds its own, so that each later build is checked against
# what every earlier one wrote (ARCHITECTURE.md, "Upgrades and compatibility").
set -euo pipefail

binary=$(realpath "${1:?usage: $0 HARAFT_BINARY OUT_DIR}")
out=${2:?usage: $0 HARAFT_BINARY OUT_DIR}
run_for_s=${RUN_FOR_S:-8}
# Ports unlikely to be in use; override with BASE_PORT.
base=${BASE_PORT:-17850}

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for i in 1 2 3; do
    {
        echo "[cluster]"
        echo 'name = "fixture"'
        echo "[node]"
        echo "id = $i"
        echo "data_dir = \"$work/node$i\""
        for j in 1 2 3; do
            echo "[[member]]"
            echo "id = $j"
            echo "name = \"node$j\""
            echo "address = \"127.0.0.1:$((base + j))\""
        done
    } >"$work/node$i.toml"
done

for i in 1 2 3; do
    "$binary" --config "$work/node$i.toml" >"$work/node$i.log" 2>&1 &
    pids+=("$!")
done
sleep "$run_for_s"
# SIGTERM: each agent stops cleanly, as on an upgrade.
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
wait "${pids[@]}" 2>/dev/null || true
pids=()
if ! grep -q "granted\|Granted\|grant" "$work"/node*.log; then
    echo "no lease was granted in ${run_for_s}s; logs:" >&2
    tail -n 20 "$work"/node*.log >&2
    exit 1
fi

rm -rf "$out"
mkdir -p "$out"
cp -r "$work/node1/raft" "$work/node1/haraft.identity" "$work/node1/haraft.acked" "$out/"
"$binary" --version >"$out/VERSION" 2>&1 || true
echo "made $out ($(du -sh "$out" | cut -f1)) with $("$binary" --version 2>&1 || echo "$binary")"
