#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, for `make test-slurm`:
#
#     workflow/scripts/local_slurm.sh COMMAND [ARG...]
#     workflow/scripts/local_slurm.sh --preflight
#
# starts munged, slurmctld and slurmd (as root) with a generated slurm.conf for `hostname -s`,
# runs COMMAND with SLURM_CONF pointing at it (sbatch, squeue, srun and the Snakemake SLURM
# executor then talk to this cluster), stops the daemons by their pid files (trap, also on error or
# Ctrl-C) and exits with COMMAND's status. Key, sockets, state, spool, pid files and logs live in
# one temporary directory, removed at the end (kept with KEEP_SLURM_DIR=1; the daemons' logs are
# printed when COMMAND fails). Installs Debian's slurm-wlm and munge with apt-get when absent.
#
# --preflight answers whether this machine can host that cluster, starting nothing (CI asks it
# before `make test-slurm`): it checks root, installs slurm-wlm and munge with apt-get when absent
# (under `timeout`), and checks the two ports and the temporary directory. It prints one line on
# stdout and exits 0 when the machine can host the cluster, 77 when it cannot (the line says why:
# not root, packages absent and not installable, a port in use, ...), 2 on a bad setting.
# COMMAND mode runs the same checks and stops with status 2 and that line when one fails.
#
# The node declares at least 4 CPUs and 32 GB (SlurmdParameters=config_overrides), what the SLURM
# profile asks for a training job, even on a smaller machine, so that profiles/slurm runs unchanged.
# Nothing is enforced (no cgroups, memory not a consumable resource): a functional test of the
# submission path, not of resource limits. Settings: SLURM_TEST_PORT (slurmctld; slurmd uses +1,
# default 6817), SLURM_TEST_DIR (parent of the temporary directory, default $TMPDIR or /tmp),
# SLURM_TEST_APT_TIMEOUT (seconds for apt-get update + install, default 600), SLURM_TEST_SBIN
# (directories appended to PATH to find the daemons, default /usr/sbin:/sbin).
set -euo pipefail

die() { echo "local_slurm.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: local_slurm.sh COMMAND [ARG...] | local_slurm.sh --preflight"
PREFLIGHT=0
if [ "$1" = --preflight ]; then
    [ $# -eq 1 ] || die "usage: local_slurm.sh --preflight (no further arguments)"
    PREFLIGHT=1
fi
PATH="$PATH:${SLURM_TEST_SBIN-/usr/sbin:/sbin}"

PORT=${SLURM_TEST_PORT:-6817}
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1024 ] && [ "$PORT" -le 65534 ] \
    || die "SLURM_TEST_PORT='$PORT' is not a port number in 1024..65534"
APT_TIMEOUT=${SLURM_TEST_APT_TIMEOUT:-600}
[[ "$APT_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "SLURM_TEST_APT_TIMEOUT='$APT_TIMEOUT' is not a number of seconds"
PARENT=${SLURM_TEST_DIR:-${TMPDIR:-/tmp}}
NEEDED="munged slurmctld slurmd sbatch srun squeue scontrol sinfo scancel"

missing() { local c out=""; for c in $NEEDED; do command -v "$c" >/dev/null 2>&1 || out="$out $c"; done; echo "${out# }"; }

# apt-get update + install under a time limit; on failure sets REASON and returns 1
install_slurm() {
    local log rc last
    if ! command -v apt-get >/dev/null 2>&1; then
        REASON="slurm-wlm/munge not installed (missing: $1) and no apt-get here to install them"
        return 1
    fi
    echo "local_slurm.sh: installing slurm-wlm and munge with apt-get (at most ${APT_TIMEOUT} s)" >&2
    log=$(mktemp "${TMPDIR:-/tmp}/local-slurm-apt.XXXXXX")
    set +e
    timeout -k 10 "$APT_TIMEOUT" sh -c 'apt-get -o DPkg::Lock::Timeout=120 update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
            --no-install-recommends slurm-wlm munge' >"$log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        REASON="slurm-wlm/munge not installed (missing: $1) and apt-get did not finish within ${APT_TIMEOUT} s"
    elif [ "$rc" -ne 0 ]; then
        last=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-200 || true)
        REASON="slurm-wlm/munge not installed (missing: $1) and apt-get failed (exit $rc: ${last:-no output})"
    fi
    rm -f "$log"
    [ "$rc" -eq 0 ]
}

# Can this machine host the cluster? Sets SUMMARY (return 0) or REASON (return 1).
check_host() {
    local uid lack p sock probe
    uid=$(id -u 2>/dev/null || echo unknown)
    if [ "$uid" != 0 ]; then
        REASON="not root (uid $uid): slurmd starts jobs as their user and munged needs its key; run as root"
        return 1
    fi
    lack=$(missing)
    if [ -n "$lack" ]; then
        install_slurm "$lack" || return 1
        hash -r
        lack=$(missing)
        if [ -n "$lack" ]; then
            REASON="apt-get installed slurm-wlm and munge but these are still not on PATH: $lack"
            return 1
        fi
    fi
    for p in "$PORT" $((PORT + 1)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            REASON="port $p on 127.0.0.1 is in use (another slurmctld/slurmd?); set SLURM_TEST_PORT to a free port"
            return 1
        fi
    done
    if [ ! -d "$PARENT" ] || [ ! -w "$PARENT" ]; then
        REASON="temporary directory '$PARENT' is not a writable directory; set SLURM_TEST_DIR"
        return 1
    fi
    # slurmd runs each batch script from its spool directory, under $PARENT
    probe=$(mktemp "$PARENT/local-slurm-exec.XXXXXX" 2>/dev/null) || {
        REASON="cannot create a file in temporary directory '$PARENT'; set SLURM_TEST_DIR"
        return 1
    }
    printf '#!/bin/sh\nexit 0\n' > "$probe" && chmod 700 "$probe"
    if ! "$probe" 2>/dev/null; then
        rm -f "$probe"
        REASON="temporary directory '$PARENT' does not let files run (mounted noexec?): slurmd runs batch scripts from there; set SLURM_TEST_DIR"
        return 1
    fi
    rm -f "$probe"
    sock="$PARENT/local-slurm.XXXXXX/munge/munge.socket"
    if [ "${#sock}" -gt 107 ]; then  # sun_path holds 108 bytes with the terminating NUL
        REASON="temporary directory '$PARENT' is too long for munge's socket path (${#sock} > 107 bytes); set SLURM_TEST_DIR to a shorter one"
        return 1
    fi
    SUMMARY="can host a test cluster: $(slurmctld -V 2>/dev/null | head -n 1 || true), $(munged -V 2>/dev/null | head -n 1 | cut -d' ' -f1 || true), ports $PORT/$((PORT + 1)) free, under $PARENT"
}

REASON="" SUMMARY=""
if [ "$PREFLIGHT" = 1 ]; then
    if check_host; then echo "$SUMMARY"; exit 0; fi
    echo "$REASON"
    exit 77
fi
check_host || die "$REASON"

DIR=$(mktemp -d "$PARENT/local-slurm.XXXXXX")
chmod 700 "$DIR"
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
NODE=$(hostname -s 2>/dev/null || uname -n)
NODE=${NODE%%.*}
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
DECLARED_CPUS=$(( CPUS > 4 ? CPUS : 4 ))
DECLARED_MEM=$(( MEM_MB > 32000 ? MEM_MB : 32000 ))

stop() {
    local rc=$?
    # jobs still queued or running (COMMAND interrupted): cancel them while the daemons are up
    if [ -s "$DIR/slurmctld.pid" ] && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
        squeue -h -o %i | xargs -r scancel 2>/dev/null
        for _ in $(seq 20); do [ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    for daemon in slurmd slurmctld munged; do
        local pidfile="$DIR/$daemon.pid"
        [ -s "$pidfile" ] || continue
        local pid; pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || continue
        # gone, or a zombie (a daemon's parent is PID 1, which in a container may never reap it)
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        for f in "$DIR"/log/*.log; do [ -e "$f" ] && { echo "== $f (last 30 lines)"; tail -n 30 "$f"; } >&2; done
    fi
    if [ "${KEEP_SLURM_DIR:-0}" = 1 ]; then echo "local_slurm.sh: kept $DIR" >&2; else rm -rf "$DIR"; fi
    exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT TERM

# munge: key, socket, pid, log and seed in $DIR (munged's defaults are /etc/munge and /run/munge)
SOCKET="$DIR/munge/munge.socket"
mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null \
    || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$DIR/munge/munge.key"
munged --key-file="$DIR/munge/munge.key" --socket="$SOCKET" --pid-file="$DIR/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" --force

cat > "$DIR/slurm.conf" <<EOF
# generated by workflow/scripts/local_slurm.sh
ClusterName=localtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$DECLARED_CPUS RealMemory=$DECLARED_MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$DIR/slurm.conf"
# The Snakemake SLURM job step (snakemake-executor-plugin-slurm-jobstep 0.6) drops every SLURM_*
# variable but the job's identity before its nested `srun`, SLURM_CONF included, so srun would look
# for /etc/slurm/slurm.conf. Client wrappers first on PATH (exported to jobs) carry the config path.
mkdir -p "$DIR/bin"
for cmd in srun sbatch squeue scontrol sinfo scancel sacct; do
    real=$(command -v "$cmd") || continue
    printf '#!/bin/sh\nSLURM_CONF="%s"; export SLURM_CONF\nexec "%s" "$@"\n' "$SLURM_CONF" "$real" > "$DIR/bin/$cmd"
    chmod 755 "$DIR/bin/$cmd"
done
export PATH="$DIR/bin:$PATH"

slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$NODE"
for _ in $(seq 120); do  # up to 60 s: slow on a loaded machine
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
    case "$state" in idle|mixed|allocated) break ;; esac
    sleep 0.5
done
case "$state" in idle|mixed|allocated) ;; *) die "node $NODE did not come up (state '${state:-none}')" ;; esac
echo "local_slurm.sh: cluster up in $DIR (node $NODE, $CPUS CPUs, declared $DECLARED_CPUS CPUs / $DECLARED_MEM MB)" >&2

set +e
"$@"
rc=$?
set -e
exit "$rc"
