#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for gpubench's Slurm executor and its tests:
# munged, MariaDB (for slurmdbd: submitit polls job states with sacct, which needs
# accounting), slurmdbd, slurmctld and slurmd, all from the system packages, started
# directly as root (no systemd), the node at 127.0.0.1, no cgroups
# (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none). Idempotent: a cluster
# already up is left as it is. State, configuration and logs: $GPUBENCH_SLURM_DIR
# (default /var/tmp/gpubench-slurm); clients find it through SLURM_CONF (printed), or
# through /etc/slurm/slurm.conf where that was free (a link to it).
# `make slurm-down` (tools/slurm/down.sh) stops what this started.
set -euo pipefail
DIR=${GPUBENCH_SLURM_DIR:-/var/tmp/gpubench-slurm}
CONF=$DIR/etc/slurm.conf
export SLURM_CONF=$CONF
say() { echo "slurm-up: $*" >&2; }
fail() { echo "slurm-up: error: $*" >&2; exit 1; }

for tool in munged slurmctld slurmd slurmdbd sbatch sacct mariadbd mariadb-install-db; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (make slurm-install: apt-get install slurm-wlm slurmdbd munge mariadb-server)"
done
[ "$(id -u)" = 0 ] || fail "run as root: the daemons start as root here"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$what did not come up within ${limit}s (logs: $DIR/log)"
}

if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" && sinfo -h >/dev/null 2>&1; then
  say "already up (SLURM_CONF=$CONF)"; echo "export SLURM_CONF=$CONF"; exit 0
fi
mkdir -p "$DIR"/{etc,run,log,state,spool,mysql}

# munge: the system key (the package makes one), our own socket and pid file
if ! alive "$DIR/run/munged.pid"; then
  [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chmod 400 /etc/munge/munge.key; }
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  munged --force --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/run/munge.seed"
  wait_for 10 munged munge -n
fi

# MariaDB on 127.0.0.1:${GPUBENCH_SLURM_DB_PORT:-3306}, its data under $DIR/mysql
DB_PORT=${GPUBENCH_SLURM_DB_PORT:-3306}
DB_SOCK=$DIR/run/mysqld.sock
if ! alive "$DIR/run/mysqld.pid"; then
  if [ ! -d "$DIR/mysql/mysql" ]; then
    mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
      >"$DIR/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed: see $DIR/log/mariadb-install.log"
  fi
  mariadbd --user=root --datadir="$DIR/mysql" --socket="$DB_SOCK" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$DIR/run/mysqld.pid" --log-error="$DIR/log/mariadb.log" \
    --skip-log-bin --innodb-buffer-pool-size=64M >/dev/null 2>&1 &
  wait_for 60 mariadb mariadb --socket="$DB_SOCK" -e "select 1"
  mariadb --socket="$DB_SOCK" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'gpubench';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
fi

# the configuration: this machine's CPUs and memory as slurmd -C sees them
read -r CPUS MEM < <(slurmd -C | head -1 | sed -E 's/.*CPUs=([0-9]+).*RealMemory=([0-9]+).*/\1 \2/')
cat > "$CONF" <<CONF
# written by gpubench's tools/slurm/up.sh: a one-node cluster on 127.0.0.1
ClusterName=gpubench
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MinJobAge=300
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$((MEM * 9 / 10)) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$DIR/etc/slurmdbd.conf" <<CONF
# written by gpubench's tools/slurm/up.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=gpubench
StorageLoc=slurm_acct_db
CONF
chmod 600 "$DIR/etc/slurmdbd.conf"
# clients without SLURM_CONF find it where the packages look, if nothing else is there
[ -e /etc/slurm/slurm.conf ] || { mkdir -p /etc/slurm; ln -s "$CONF" /etc/slurm/slurm.conf; }

if ! alive "$DIR/run/slurmdbd.pid"; then
  slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 60 slurmdbd sacctmgr -n list cluster
fi
sacctmgr -i add cluster gpubench >/dev/null 2>&1 || true  # present already: fine
alive "$DIR/run/slurmctld.pid" || slurmctld
wait_for 30 slurmctld scontrol ping
alive "$DIR/run/slurmd.pid" || slurmd -N localhost
node_up() { sinfo -h -N -o %t | grep -qE '^(idle|mix|alloc)'; }
wait_for 60 "the node" node_up
say "up: partition debug, node localhost ($CPUS CPUs), accounting through slurmdbd (SLURM_CONF=$CONF)"
echo "export SLURM_CONF=$CONF"
