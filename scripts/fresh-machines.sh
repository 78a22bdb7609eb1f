#!/usr/bin/env bash
# Long check, not part of CI (README "Tests"): README "Install on a
# database host" and "Upgrading haraft" followed word for word on fresh
# Debian 12 machines, the agents run by systemd.
#
#   scripts/fresh-machines.sh NEW.deb [OLD.deb]
#
# Three systemd-nspawn containers booted from a debootstrapped bookworm
# (minbase + systemd), on a private bridge with the addresses of
# deploy/hosts/ (db1..db3 = 10.0.0.11-13, so the example files work
# unedited; the host is 10.0.0.1 and NATs them to the Debian mirror for
# apt-get). The README's code blocks are read out of README.md and run
# as they are, as root in /root of each container, next to the copied
# .deb; only `editor` is skipped (the example addresses are already
# right) and `journalctl -f` is cut off after 5 s.
#
# Phase "install" (NEW.deb): the install block on the three hosts, the
# status block, a table written through the primary (haraftctl dsn,
# psql), `systemctl restart haraft@main` on a replica (its postmaster PID
# must not change), then the primary's container killed (SIGKILL to its
# init): another member must become primary and take writes.
# Phase "upgrade" (with OLD.deb, fresh containers): the install block with
# OLD.deb, then "Upgrading haraft": step 1 on each replica, the rollback
# of one host while the other still runs the old release, the switchover,
# step 1 on the former primary, the check (VERSION, Features: level 1,
# feature-level-raised in the history), then an old release started on
# the raised store must refuse it and the new one take over again.
#
# Needs root, debootstrap, systemd-nspawn (systemd-container), nft, ip,
# jq, and room for four root filesystems (~1.5 GB). Works without systemd
# as the host's init (--register=no --keep-unit). Environment:
#   FRESH_DIR     work directory (default /var/tmp/haraft-fresh); the base
#                 image $FRESH_DIR/base is debootstrapped once and kept
#   FRESH_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   FRESH_PHASES  "install upgrade" (default; upgrade needs OLD.deb)
#   FRESH_KEEP=1  keep the containers' root filesystems after the run
# Every wait is bounded; on any exit the containers started here are
# stopped by PID, the network undone, ip_forward restored.
set -euo pipefail

new_deb=${1:?usage: scripts/fresh-machines.sh NEW.deb [OLD.deb]}
old_deb=${2:-}
new_deb=$(realpath "$new_deb")
[ -z "$old_deb" ] || old_deb=$(realpath "$old_deb")
repo=$(cd "$(dirname "$0")/.." && pwd)
readme="$repo/README.md"
dir=${FRESH_DIR:-/var/tmp/haraft-fresh}
base="$dir/base"
mirror=${FRESH_MIRROR:-http://deb.debian.org/debian}
phases=${FRESH_PHASES:-install upgrade}
logs="$dir/logs"
hosts=(1 2 3)
declare -A nspawn_pid=() init_pid=()

say() { printf '\n=== %s %s\n' "$(date +%T)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
for tool in debootstrap systemd-nspawn nsenter nft ip jq; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
mkdir -p "$dir" "$logs"
# One run at a time: the network names and root filesystems are fixed.
exec 9>"$dir/lock"
flock -n 9 || die "another run holds $dir/lock"

# --- the README's code blocks ------------------------------------------

# The N-th fenced block under "## HEADING" (up to the next "## "), its
# indentation (inside a list item) removed.
readme_block() {
    awk -v h="## $1" -v n="$2" '
        $0 == h { s = 1; next }
        s && /^## / { exit }
        s && /^ *```/ {
            if (b) { b = 0; if (k == n) exit; next }
            k++; b = 1; match($0, /^ */); ind = RLENGTH; next
        }
        s && b && k == n { print substr($0, ind + 1) }
    ' "$readme"
}

# The rollback command of "Rolling one host back" (inline, over two lines).
readme_rollback() {
    tr '\n' ' ' <"$readme" | grep -o 'apt-get install --allow-downgrades [^`]*' | head -1
}

install_block=$(readme_block "Install on a database host" 2)
status_block=$(readme_block "Install on a database host" 3)
before_block=$(readme_block "Upgrading haraft" 1)
step1_block=$(readme_block "Upgrading haraft" 2)
switch_block=$(readme_block "Upgrading haraft" 3)
rollback_cmd=$(readme_rollback)
for b in install_block status_block before_block step1_block switch_block rollback_cmd; do
    [ -n "${!b}" ] || die "README.md: $b not found (the sections changed: update this script)"
done
grep -q 'haraft_0.2.0-1_amd64.deb' <<<"$install_block" || die "README install block names no haraft_0.2.0-1_amd64.deb"

# The README's package names replaced by the files given (same names
# unless the version moved on), the host's example file chosen.
for_host() { # HOST DEB TEXT
    sed -e "s/haraft_0\.2\.0-1_amd64\.deb/$(basename "$2")/g" \
        -e "s/haraft_0\.1\.0-1_amd64\.deb/$(basename "${old_deb:-haraft_0.1.0-1_amd64.deb}")/g" \
        -e "s#examples/db1\.toml#examples/db$1.toml#" \
        -e 's/^editor /: editor /' \
        -e 's/^journalctl \(.*\) -f /timeout 5 journalctl \1 -f --no-pager /' <<<"$3"
}

# --- machines --------------------------------------------------------------

if [ ! -x "$base/usr/lib/systemd/systemd" ]; then
    say "debootstrap bookworm into $base (once)"
    rm -rf "$base"
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,iproute2,ca-certificates,procps,less \
        bookworm "$base" "$mirror" >"$logs/debootstrap.log" 2>&1 || die "debootstrap (see $logs/debootstrap.log)"
fi

old_forward=$(sysctl -n net.ipv4.ip_forward)
net_up() {
    ip link add hfbr0 type bridge
    ip addr add 10.0.0.1/24 dev hfbr0
    ip link set hfbr0 up
    for i in "${hosts[@]}"; do
        ip netns add "hf-db$i"
        ip link add "hf-db$i" type veth peer name eth0 netns "hf-db$i"
        ip link set "hf-db$i" master hfbr0 up
        ip -n "hf-db$i" link set lo up
        ip -n "hf-db$i" addr add "10.0.0.1$i/24" dev eth0
        ip -n "hf-db$i" link set eth0 up
        ip -n "hf-db$i" route add default via 10.0.0.1
    done
    nft -f - <<'EOF'
table ip haraft_fresh {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 10.0.0.0/24 ip daddr != 10.0.0.0/24 masquerade
    }
}
EOF
    sysctl -qw net.ipv4.ip_forward=1
}
net_down() {
    nft delete table ip haraft_fresh 2>/dev/null || true
    for i in "${hosts[@]}"; do
        ip link del "hf-db$i" 2>/dev/null || true
        ip netns del "hf-db$i" 2>/dev/null || true
    done
    ip link del hfbr0 2>/dev/null || true
    sysctl -qw net.ipv4.ip_forward="$old_forward"
}

# The first child of PID (the file ends in a space).
children() { local c; c=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true); set -- $c; echo "${1:-}"; }

boot() { # HOST
    local i=$1 root="$dir/db$1" pid outer init=""
    rm -rf "$root"
    cp -a "$base" "$root"
    echo "db$i" >"$root/etc/hostname"
    # As the Debian installer writes it (minbase has none; make-ssl-cert,
    # run by PostgreSQL's postinst, wants the host's name).
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tdb%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$i" >"$root/etc/hosts"
    cp "$new_deb" ${old_deb:+"$old_deb"} "$root/root/"
    systemd-nspawn --boot --register=no --keep-unit --machine="db$i" -D "$root" \
        --network-namespace-path="/run/netns/hf-db$i" --console=read-only \
        </dev/null >"$logs/db$i.console" 2>&1 &
    pid=$!
    nspawn_pid[$i]=$pid
    # The container's init: the first process under systemd-nspawn that is
    # not systemd-nspawn itself (it may fork an intermediate child).
    for _ in $(seq 100); do
        outer=$(children "$pid")
        while [ -n "$outer" ] && [ "$(cat "/proc/$outer/comm" 2>/dev/null)" = systemd-nspawn ]; do
            outer=$(children "$outer")
        done
        init=$outer
        [ -z "$init" ] || [ "$(cat "/proc/$init/comm" 2>/dev/null)" != systemd ] || break
        init=""
        sleep 0.2
    done
    [ -n "$init" ] || die "db$i: no container init under systemd-nspawn $pid ($logs/db$i.console)"
    init_pid[$i]=$init
}

# Runs a script in container HOST as root in /root, echoing each command.
in_host() { # HOST SCRIPT
    nsenter -t "${init_pid[$1]}" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
        bash -c 'cd /root && set -xeo pipefail && eval "$1"' - "$2" </dev/null
}
# The same, the output also kept in $logs and prefixed with the host.
run_on() { # HOST LABEL SCRIPT
    say "db$1: $2"
    in_host "$1" "$3" 2>&1 | tee -a "$logs/db$1.commands" | sed "s/^/db$1| /" >&2
    return "${PIPESTATUS[0]}"
}

# The same on a terminal (script(1)), typing "y" at the first prompt as an
# operator would: haraftctl's "Proceed? [y/N]", apt-get's "Do you want to
# continue? [Y/n]" before a downgrade.
run_answering_yes() { # HOST LABEL SCRIPT
    say "db$1: $2 (answering y)"
    printf '%s\n' "$3" >"$dir/db$1/root/.fresh-step.sh"
    in_host "$1" "printf 'y\\n' | script -qefc 'bash -xeo pipefail /root/.fresh-step.sh' /dev/null" 2>&1 \
        | tr -d '\r' | tee -a "$logs/db$1.commands" | sed "s/^/db$1| /" >&2
    return "${PIPESTATUS[0]}"
}

wait_running() { # HOST
    local state=""
    for _ in $(seq 120); do
        state=$(in_host "$1" 'systemctl is-system-running' 2>/dev/null || true)
        case "$state" in running | degraded) return 0 ;; esac
        sleep 1
    done
    die "db$1: systemd not up after 120 s ($state)"
}

stop_host() { # HOST: poweroff (SIGTERM to nspawn), then SIGKILL by PID
    local i=$1 pid=${nspawn_pid[$1]:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "${init_pid[$i]}" "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "nspawn_pid[$i]"
}

teardown() {
    for i in "${hosts[@]}"; do stop_host "$i"; done
    net_down
    if [ "${FRESH_KEEP:-}" != 1 ]; then
        for i in "${hosts[@]}"; do rm -rf "${dir:?}/db$i"; done
    fi
}
trap teardown EXIT
trap 'exit 130' INT TERM

start_machines() {
    local t0=$SECONDS
    for i in "${hosts[@]}"; do boot "$i"; done
    for i in "${hosts[@]}"; do wait_running "$i"; done
    say "three containers copied from the base and booted in $((SECONDS - t0)) s"
}

# --- the cluster, through haraftctl on a host ------------------------------

endpoints=10.0.0.11:7001,10.0.0.12:7001,10.0.0.13:7001
status_json() { # HOST
    in_host "$1" "haraftctl --endpoints $endpoints status --json" 2>/dev/null
}
# Waits up to LIMIT s until jq FILTER holds on HOST's status; prints the
# seconds waited.
wait_status() { # HOST LIMIT WHAT FILTER
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$2" ]; do
        if status_json "$1" | jq -e "$4" >/dev/null 2>&1; then
            say "$3: after $((SECONDS - t0)) s"
            return 0
        fi
        sleep 1
    done
    in_host "$1" "haraftctl --endpoints $endpoints status" >&2 || true
    die "$3: not within $2 s"
}
normal='.cluster_state == "Normal" and .primary != null'
primary_of() { status_json "$1" | jq -r .primary; }

install_cluster() { # DEB
    local t0=$SECONDS
    for i in "${hosts[@]}"; do
        run_on "$i" "README install block ($(basename "$1"))" "$(for_host "$i" "$1" "$install_block")" \
            || die "db$i: the README install block failed"
    done
    say "installed on three hosts in $((SECONDS - t0)) s"
    wait_status 1 300 "bootstrap to Normal (from the last systemctl enable)" "$normal"
}

# --- phase install ----------------------------------------------------------

phase_install() {
    say "PHASE install: $(basename "$new_deb")"
    start_machines
    install_cluster "$new_deb"
    run_on 1 "README status block" "$(for_host 1 "$new_deb" "$status_block")" || true
    local p; p=$(primary_of 1)
    local pn=${p#db} r
    for r in "${hosts[@]}"; do [ "$r" = "$pn" ] || break; done
    say "primary $p; replica db$r"

    run_on "$r" "rows through the primary (haraftctl dsn, psql)" "
        export PGPASSWORD=\$(cat /etc/haraft/superuser.password)
        dsn=\$(haraftctl --endpoints $endpoints dsn --role primary)
        psql \"\$dsn\" -v ON_ERROR_STOP=1 -c 'CREATE TABLE fresh(id int PRIMARY KEY, host text)' \
            -c \"INSERT INTO fresh SELECT g, 'before' FROM generate_series(1, 5) g\" \
            -c 'SELECT count(*) FROM fresh'
        psql \"host=localhost user=postgres dbname=postgres\" -Atc 'SELECT pg_is_in_recovery(), count(*) FROM fresh'
    " || die "writing through the primary"
    run_on "$pn" "journalctl -u haraft@main" "journalctl -u haraft@main --no-pager | tail -n 15" || true

    run_on "$r" "systemctl restart haraft@main on a replica keeps PostgreSQL" "
        before=\$(head -1 /var/lib/postgresql/15/haraft/postmaster.pid)
        systemctl restart haraft@main
        systemctl is-active haraft@main
        after=\$(head -1 /var/lib/postgresql/15/haraft/postmaster.pid)
        echo postmaster before \$before after \$after
        test \"\$before\" = \"\$after\"
        systemctl show -p MainPID,NRestarts haraft@main
    " || die "restarting a replica's agent changed its PostgreSQL"
    wait_status "$r" 60 "Normal again after the replica's agent restart" "$normal"

    say "SIGKILL to $p's init (PID ${init_pid[$pn]}): the machine dies"
    kill -KILL "${init_pid[$pn]}"
    wait "${nspawn_pid[$pn]}" 2>/dev/null || true
    unset "nspawn_pid[$pn]"
    wait_status "$r" 120 "failover: a new primary other than $p" \
        ".primary != null and .primary != \"$p\" and .lease.valid_for_ms != null"
    run_on "$r" "status and a write after the failover" "
        haraftctl --endpoints $endpoints status || true
        export PGPASSWORD=\$(cat /etc/haraft/superuser.password)
        psql \"\$(haraftctl --endpoints $endpoints dsn --role primary)\" -v ON_ERROR_STOP=1 \
            -c \"INSERT INTO fresh VALUES (6, 'after failover')\" -c 'SELECT count(*) FROM fresh'
    " || die "writing after the failover"
    for i in "${hosts[@]}"; do stop_host "$i"; done
}

# --- phase upgrade ----------------------------------------------------------

# Step 1 of "Upgrading haraft" on HOST, then the README's condition to go
# on: reachable again, Normal, VERSION the new release (or no versions at
# all: a status from a Raft leader still on 0.1, which reports none).
upgrade_step1() { # HOST
    run_on "$1" "README upgrade step 1" "$(for_host "$1" "$new_deb" "$step1_block")" \
        || die "db$1: the README's step 1 failed"
    wait_status "$1" 120 "db$1 on $new_version (or ?), reachable, streaming, cluster Normal" \
        "([.members[].version] | all(. == null)) as \$none | $normal and (.members[] | select(.name == \"db$1\") | .reachable and (.version == \"$new_version\" or \$none))"
    run_on "$1" "the installed release" "haraft --version | grep -Fx 'haraft $new_version'; haraftctl --endpoints $endpoints status | grep -E '^(Cluster|Raft leader|Features)'"
}

phase_upgrade() {
    [ -n "$old_deb" ] || { say "PHASE upgrade skipped: no OLD.deb"; return 0; }
    new_version=$(dpkg-deb -f "$new_deb" Version); new_version=${new_version%-*}
    old_version=$(dpkg-deb -f "$old_deb" Version); old_version=${old_version%-*}
    say "PHASE upgrade: $(basename "$old_deb") -> $(basename "$new_deb")"
    start_machines
    install_cluster "$old_deb"
    run_on 1 "README: before you start" "$before_block" || die "haraftctl status before the upgrade"
    local p; p=$(primary_of 1)
    local pn=${p#db} replicas=() i
    for i in "${hosts[@]}"; do [ "$i" = "$pn" ] || replicas+=("$i"); done
    say "primary $p; replicas db${replicas[0]} db${replicas[1]}"

    upgrade_step1 "${replicas[0]}"
    run_on "${replicas[0]}" "Features while the upgrade is in progress" "haraftctl status | grep -E '^(Cluster|Features)'" || true

    say "rolling db${replicas[1]} back while db$pn still runs the old release"
    upgrade_step1 "${replicas[1]}"
    run_answering_yes "${replicas[1]}" "README rollback of one host" "$rollback_cmd" \
        || die "the README's rollback command failed"
    run_on "${replicas[1]}" "the installed release" "haraft --version | grep -Fx 'haraft $old_version'"
    wait_status "${replicas[1]}" 120 "db${replicas[1]} back on the old release, cluster Normal" \
        "$normal and (.members[] | select(.name == \"db${replicas[1]}\") | .version == null and .reachable)"
    upgrade_step1 "${replicas[1]}"

    # README: switchover --to db2 (an upgraded replica).
    local switch=$switch_block
    [ "$p" = db1 ] || switch=$(sed "s/--to db2/--to db${replicas[0]}/" <<<"$switch_block")
    local t0=$SECONDS
    run_answering_yes "${replicas[0]}" "README step 2: switchover" "$switch" || die "the README's switchover failed"
    say "switchover took $((SECONDS - t0)) s"
    wait_status "${replicas[0]}" 60 "Normal after the switchover" "$normal and .primary != \"$p\""
    upgrade_step1 "$pn"
    wait_status "$pn" 60 "step 3: Features: level 1 (raised)" '.feature_level >= 1'
    run_on "$pn" "README step 3: check" "
        haraftctl status
        haraftctl history | grep -i feature
    " || die "the check after the upgrade"

    say "an old release on the raised store must refuse it"
    # README: haraft 0.1 words the refusal as a damaged mark file.
    run_on "${replicas[1]}" "downgrade after the raise (README: refused at start)" "
        apt-get install -y --allow-downgrades ./$(basename "$old_deb")
        systemctl restart haraft@main || true
        sleep 8
        journalctl -u haraft@main --no-pager >journal.txt
        grep -m1 -F 'haraft.acked: neither of its two copies passes its checksum' journal.txt
    " || die "the old release did not refuse the raised store as README says"
    run_on "${replicas[1]}" "reinstall the new release and restart its agent" "
        apt-get install -y ./$(basename "$new_deb")
        systemctl restart haraft@main
        haraft --version
    " || die "reinstalling the new release"
    wait_status "${replicas[1]}" 120 "Normal with every member on $new_version" \
        "$normal and ([.members[] | select(.version != \"$new_version\")] | length == 0)"
    for i in "${hosts[@]}"; do stop_host "$i"; done
}

net_up
for phase in $phases; do
    "phase_$phase"
done
say "done: README install and upgrade followed on fresh machines (logs: $logs)"
