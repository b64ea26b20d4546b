"""A rank of a run started by the torchrun launcher (launch/torchrun.py):
`python -m torch.distributed.run ... -m gpubench.launch.rank_worker`.

torchrun starts the ranks with its own environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) and no channel of ours: the request comes in the environment
variable GPUBENCH_RANK_REQUEST (JSON) and progress goes as JSON lines appended to the
file named by GPUBENCH_EVENT_FILE (rank 0's progress; any rank's refusal). Each rank
runs the ordinary runner with its rank context; rank 0 writes the run folder.

Exit codes: 0 finished, 2 refused (the event says why). Anything else raised ends
the rank through torchrun's @record, which writes the exception to torchrun's error
file; torchrun then stops the other ranks and the launcher reads that file for the
run's failed row.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace

from gpubench.errors import BackendUnavailable, Unsupported, UserError
from gpubench.launch.worker import (
    EXIT_FINISHED, EXIT_REFUSED, _die_with_parent, _Events, request_from_json,
)

REQUEST_ENV = "GPUBENCH_RANK_REQUEST"
EVENT_FILE_ENV = "GPUBENCH_EVENT_FILE"


def _events() -> _Events:
    path = os.environ.get(EVENT_FILE_ENV)
    return _Events(open(path, "a", buffering=1) if path else None)


def run_rank() -> int:
    from gpubench.backends import resolve_backend
    from gpubench.launch.rank_comm import close_ranks, open_ranks, rank_env
    from gpubench.measure.protocol import no_progress
    from gpubench.measure.runner import execute_run
    from gpubench.telemetry import pin_cuda_device_order

    _die_with_parent()  # torchrun SIGKILLed (a timeout): no rank runs on
    pin_cuda_device_order(os.environ)  # before anything starts CUDA
    request = request_from_json(json.loads(os.environ[REQUEST_ENV]))
    rank, _, local_rank = rank_env()
    events = _events()
    try:
        # each rank on its own GPU: --device is the first of the node's
        request = replace(request, device_index=request.device_index + local_rank)
        ranks = open_ranks(request.strategy, resolve_backend(request.backend).device_kind,
                           request.device_index)
        outcome = execute_run(request, events if rank == 0 else no_progress, ranks)
    except (Unsupported, BackendUnavailable) as exc:
        events("refused", kind="unsupported", message=str(exc), rank=rank)
        return EXIT_REFUSED
    except UserError as exc:
        events("refused", kind="usage", message=str(exc), rank=rank)
        return EXIT_REFUSED
    except Exception as exc:
        # When it failed, by this rank's clock, before anything closes its connections:
        # the ranks waiting for it fail a moment later (a lost connection), and the
        # launcher reports the first (@record's error file, written on the way out,
        # holds the traceback). The process group is left to the process's exit.
        events("crashed", rank=rank, local_rank=local_rank, t=time.time(),
               error=f"{type(exc).__name__}: {exc}")
        raise
    close_ranks()
    if rank == 0:
        events("finished", path=str(outcome.path), status=outcome.status,
               telemetry=outcome.telemetry, warnings=outcome.warnings)
    return EXIT_FINISHED


def main() -> int:
    from torch.distributed.elastic.multiprocessing.errors import record
    return record(run_rank)()


if __name__ == "__main__":
    sys.exit(main())
