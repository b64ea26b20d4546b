"""torchrun as the torchrun launcher starts it: `python -m gpubench.launch.torchrun_agent
FAILURES_JSON <torchrun's own arguments>` is torch.distributed.run's own parser and
run(), with one addition: when ranks fail, the failures torchrun observed
(ChildFailedError.failures: each failed rank's exit code, signal, and the error its
@record wrote) go to FAILURES_JSON, so that the launcher's row rests on torchrun's own
record instead of on parsing its log."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List

NODE_RANK_FROM_SLURM = "slurm"  # --node-rank=slurm: the node rank is SLURM_NODEID


def failure_record(failure: Any) -> Dict[str, Any]:
    """One failed rank as JSON: its exit code, the signal that killed it, and the error
    its @record wrote (the exception's line and traceback; {"message": text,
    "extraInfo": {"py_callstack": ...}} in the error file)."""
    message, callstack = failure.message, ""
    if isinstance(message, dict):
        callstack = (message.get("extraInfo") or {}).get("py_callstack", "")
        message = message.get("message", "")
    return {"local_rank": failure.local_rank, "exitcode": failure.exitcode,
            "signal": failure.signal_name() if failure.exitcode < 0 else None,
            "message": str(message), "py_callstack": callstack}


def main(argv: List[str]) -> int:
    from gpubench.launch.worker import _die_with_parent
    _die_with_parent()  # gpubench killed: torchrun stops, and its ranks with it
    failures_path, args = argv[0], argv[1:]
    # started by srun on each node (launch/torchrun_slurm.py): the node rank is Slurm's
    args = [f"--node-rank={os.environ.get('SLURM_NODEID', '0')}" if a == f"--node-rank={NODE_RANK_FROM_SLURM}" else a
            for a in args]
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run
    try:
        run(parse_args(args))
    except ChildFailedError as exc:
        if not os.path.isdir(os.path.dirname(failures_path) or "."):
            print(str(exc), file=sys.stderr)  # another node's agent: node 0 keeps the record
            return 1
        with open(failures_path, "w") as f:
            json.dump({str(rank): failure_record(failure)
                       for rank, failure in exc.failures.items()}, f)
        print(str(exc), file=sys.stderr)  # torchrun's own account, in the run's log
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
