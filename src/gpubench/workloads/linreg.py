"""Linear regression: the seed's smallest workload (2 features -> 1, plain SGD, MSE)."""

from gpubench.models import Linear
from gpubench.workloads.base import ParamSpec, Workload, WorkloadSpec


def build(features: int) -> Workload:
    return Workload(
        name="linreg", task="regression", input_shape=(features,), num_outputs=1,
        loss="mse", optimizer="sgd", optimizer_args=(("lr", 0.01),),
        default_batch_size=64, layers=(Linear(1),),
        params=(("features", features),),
    )


SPEC = WorkloadSpec(
    name="linreg",
    description="linear regression, features -> 1, SGD lr 0.01, MSE",
    build=build,
    params={"features": ParamSpec(int, 2, "number of input features", minimum=1)},
)
