"""A run's ranks inside a Slurm allocation: `srun` starts one torchrun agent per node of
the allocation (the run's --nnodes of them), and the rendezvous comes from Slurm's
environment (the first node of SLURM_JOB_NODELIST, a free port there; each agent's node
rank is its SLURM_NODEID), so nobody types --master-addr on each node. Everything else
(timeout, killing, how the run ended) is the torchrun launcher's: killing srun ends
its agents on every node.

Used by a suite under `--executor slurm` (suite/slurm_task.py marks its environment)
and by `gpubench run --nproc N --nnodes M` inside an allocation without --master-addr."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional

from gpubench.errors import UserError
from gpubench.launch.torchrun import TorchrunLauncher

from gpubench.launch.torchrun_agent import NODE_RANK_FROM_SLURM


def in_slurm_allocation() -> bool:
    return bool(os.environ.get("SLURM_JOB_ID")) and shutil.which("srun") is not None


def first_node() -> str:
    """The allocation's first node (the batch host, where this launcher runs)."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not nodelist:
        raise UserError("inside Slurm without SLURM_JOB_NODELIST: no rendezvous address")
    found = subprocess.run(["scontrol", "show", "hostnames", nodelist],
                           capture_output=True, text=True)
    hosts = found.stdout.split()
    if found.returncode != 0 or not hosts:
        raise UserError(f"scontrol show hostnames {nodelist}: {found.stderr.strip() or 'no hosts'}")
    return hosts[0]


class SlurmTorchrunLauncher(TorchrunLauncher):
    def __init__(self, python: Optional[str] = None, nnodes: int = 1) -> None:
        allocated = int(os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
        if nnodes > allocated:
            raise UserError(f"--nnodes {nnodes}: the Slurm allocation has {allocated} "
                            f"node{'' if allocated == 1 else 's'}")
        # master_port 0: a free port per run (torchrun.launch picks one when it is falsy)
        super().__init__(python, nnodes=nnodes, node_rank=0, master_addr=first_node(),
                         master_port=0)

    def torchrun_args(self, nproc: int, port: int, log_dir: Path, failures: Path) -> List[str]:
        agent = super().torchrun_args(nproc, port, log_dir, failures)
        agent = [f"--node-rank={NODE_RANK_FROM_SLURM}" if a.startswith("--node-rank=") else a
                 for a in agent]
        # --overlap: the suite's own step holds this node's CPUs; --kill-on-bad-exit: one
        # node's agent failing ends the others (their ranks cannot go on without it)
        return ["srun", "--overlap", f"--nodes={self.nnodes}", f"--ntasks={self.nnodes}",
                "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--export=ALL", *agent]

