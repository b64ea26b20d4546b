"""The MNIST MLP: 784-128-10, ReLU, softmax cross-entropy, Adam, batch 64."""

from gpubench.models import Flatten, Linear, ReLU
from gpubench.workloads.base import ParamSpec, Workload, WorkloadSpec


def build(hidden: int) -> Workload:
    return Workload(
        name="mnist", task="classification", input_shape=(1, 28, 28), num_outputs=10,
        loss="cross_entropy", optimizer="adam", optimizer_args=(("lr", 1e-3),),
        default_batch_size=64,
        layers=(Flatten(), Linear(hidden), ReLU(), Linear(10)),
        params=(("hidden", hidden),),
    )


SPEC = WorkloadSpec(
    name="mnist",
    description="MNIST MLP 784-128-10, ReLU, cross-entropy, Adam",
    build=build,
    params={"hidden": ParamSpec(int, 128, "width of the hidden layer", minimum=1)},
)
