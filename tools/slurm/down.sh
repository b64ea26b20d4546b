#!/usr/bin/env bash
# Stops what tools/slurm/up.sh started (by their pid files, newest first) and removes
# the /etc/slurm/slurm.conf link it made. Keeps $GPUBENCH_SLURM_DIR (the accounting
# database, logs) for the next `make slurm-up`; `rm -rf` it to start afresh.
set -uo pipefail
DIR=${GPUBENCH_SLURM_DIR:-/var/tmp/gpubench-slurm}
for name in slurmd slurmctld slurmdbd mysqld munged; do
  pidfile=$DIR/run/$name.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
done
[ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$DIR/etc/slurm.conf" ] && rm -f /etc/slurm/slurm.conf
echo "slurm-down: stopped (state kept in $DIR)" >&2
