"""The time-to-accuracy scenario's options (gathered with every other run option in
measure/options.py), their record in a run request (RunRequest.accuracy), and what they
need together. No framework and no loop is imported."""

from __future__ import annotations

from typing import Any, Tuple

from gpubench.errors import UserError
from gpubench.measure.option import ACCURACY, POSITIVE_INT, Option, record_class

SCENARIO = "time-to-accuracy"
DEFAULT_MAX_EPOCHS = 10  # the reference recipe's epochs

ACCURACY_OPTIONS: Tuple[Option, ...] = (
    Option("target_accuracy", "time-to-accuracy: train epoch by epoch on --data mnist, "
                              "evaluating after each, until the test accuracy reaches ACC "
                              "(e.g. 0.97)", ACCURACY, metavar="ACC", group="accuracy",
           scenarios=(SCENARIO,), identity=True, label="to accuracy {:g}"),
    Option("max_epochs", f"time-to-accuracy: give up after N epochs (default "
                         f"{DEFAULT_MAX_EPOCHS})", POSITIVE_INT, metavar="N",
           shown_default=str(DEFAULT_MAX_EPOCHS), group="accuracy", scenarios=(SCENARIO,),
           needs=("target_accuracy", None,
                  "--max-epochs is for time-to-accuracy runs: give --target-accuracy")),
)

AccuracyOptions = record_class(
    "AccuracyOptions", ACCURACY_OPTIONS, __name__,
    "The time-to-accuracy scenario's part of a run request (None: not given).")


def validate_accuracy_request(req: Any) -> None:
    """time-to-accuracy's inputs: a target, real data, training, one process."""
    target = req.accuracy.target_accuracy
    if req.scenario != SCENARIO:
        if target is not None:
            raise UserError(f"--target-accuracy is for the time-to-accuracy scenario, "
                            f"not {req.scenario}")
        return
    if target is None:
        raise UserError("time-to-accuracy needs --target-accuracy (a test accuracy in (0, 1])")
    if req.data == "synthetic":
        raise UserError("--target-accuracy needs real data (--data mnist): a model memorises "
                        "synthetic batches, so their accuracy says nothing")
    if req.mode != "train":
        raise UserError("--target-accuracy trains: it cannot run in --mode infer")
    if req.processes != 1:
        raise UserError("--target-accuracy runs one training from start to target: it "
                        "cannot be spread over --processes")
