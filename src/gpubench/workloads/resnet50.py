"""ResNet-50 (v1.5: stride on the 3x3 conv of each bottleneck, as torchvision), with
BatchNorm and bottleneck residual blocks, ImageNet-shaped by default."""

from typing import List, Tuple

from gpubench.models import (
    BatchNorm2d, Conv2d, GlobalAvgPool, Layer, Linear, MaxPool2d, ReLU, Residual,
)
from gpubench.workloads.base import ParamSpec, Workload, WorkloadSpec

STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))  # (width, blocks)
EXPANSION = 4


def _bottleneck(in_ch: int, width: int, stride: int) -> Tuple[Layer, ...]:
    out_ch = width * EXPANSION
    body = (
        Conv2d(width, 1, bias=False), BatchNorm2d(), ReLU(),
        Conv2d(width, 3, stride=stride, padding=1, bias=False), BatchNorm2d(), ReLU(),
        Conv2d(out_ch, 1, bias=False), BatchNorm2d(),
    )
    shortcut: Tuple[Layer, ...] = ()
    if stride != 1 or in_ch != out_ch:
        shortcut = (Conv2d(out_ch, 1, stride=stride, bias=False), BatchNorm2d())
    return (Residual(body, shortcut), ReLU())


def build(image_size: int, num_classes: int) -> Workload:
    layers: List[Layer] = [
        Conv2d(64, 7, stride=2, padding=3, bias=False), BatchNorm2d(), ReLU(),
        MaxPool2d(3, 2, padding=1),
    ]
    in_ch = 64
    for stage, (width, blocks) in enumerate(STAGES):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.extend(_bottleneck(in_ch, width, stride))
            in_ch = width * EXPANSION
    layers += [GlobalAvgPool(), Linear(num_classes)]
    return Workload(
        name="resnet50", task="classification", input_shape=(3, image_size, image_size),
        num_outputs=num_classes, loss="cross_entropy", optimizer="sgd",
        # lr 0.1 is ImageNet's for batch 256; scaled linearly to the default batch 32
        # (Goyal et al. 2017). 0.1 at batch 32 made the loss jump (7.6 -> 4.4 -> 8.5).
        optimizer_args=(("lr", 0.0125), ("momentum", 0.9), ("weight_decay", 1e-4)),
        default_batch_size=32, layers=tuple(layers),
        params=(("image_size", image_size), ("num_classes", num_classes)),
    )


SPEC = WorkloadSpec(
    name="resnet50",
    description="ResNet-50, 3xNxN images (N=image_size), bottleneck blocks, SGD momentum",
    build=build,
    params={
        "image_size": ParamSpec(int, 224, "image height and width", minimum=32, maximum=1024),
        "num_classes": ParamSpec(int, 1000, "number of classes", minimum=2),
    },
)
