"""LeNet-5 on MNIST-shaped input (1x28x28, padded first conv as is usual for MNIST)."""

from gpubench.models import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from gpubench.workloads.base import Workload, WorkloadSpec


def build() -> Workload:
    return Workload(
        name="lenet5", task="classification", input_shape=(1, 28, 28), num_outputs=10,
        loss="cross_entropy", optimizer="adam", optimizer_args=(("lr", 1e-3),),
        default_batch_size=64,
        layers=(
            Conv2d(6, 5, padding=2), ReLU(), MaxPool2d(2, 2),
            Conv2d(16, 5), ReLU(), MaxPool2d(2, 2),
            Flatten(), Linear(120), ReLU(), Linear(84), ReLU(), Linear(10),
        ),
    )


SPEC = WorkloadSpec(
    name="lenet5",
    description="LeNet-5 conv net, 1x28x28 -> 10 classes, Adam",
    build=build,
)
