"""Model registry: every network the toolkit trains, converts and simulates.

Every model returned by :func:`build_model` follows one layout contract that the converter and
the float SNN rely on:

- it is an ``nn.Sequential`` (possibly nesting ``nn.Sequential``) whose forward is the plain
  chain of its children;
- its modules are only ``Conv2d``, ``BatchNorm2d``, :class:`~qcfs_lava.model.qcfs.QCFS` or
  ``ReLU``, ``AvgPool2d``, ``AdaptiveAvgPool2d``, ``Flatten``, ``Linear``, ``Dropout``,
  ``Identity`` and, in ResNets, :class:`BasicBlock`;
- the last module is a ``Linear`` whose outputs are the logits (no activation after it).

Example:
    >>> model = build_model("cnn", in_channels=1, num_classes=10, input_size=8, levels=4)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from qcfs_lava.errors import ModelConfigError
from qcfs_lava.model.qcfs import QCFS

__all__ = ["MODELS", "ACTIVATIONS", "BasicBlock", "build_model", "make_activation"]

ACTIVATIONS = ("qcfs", "relu")


def make_activation(activation: str, levels: int, phi: float, thresh: float) -> nn.Module:
    """One activation module: ``QCFS(levels, phi, thresh)`` or ``nn.ReLU()``."""
    if activation == "qcfs":
        return QCFS(levels, phi, thresh)
    if activation == "relu":
        return nn.ReLU()
    raise ModelConfigError(f"unknown activation {activation!r}; choose one of "
                           f"{', '.join(ACTIVATIONS)}")


class BasicBlock(nn.Module):
    r"""CIFAR-style ResNet basic block, activation after the residual add.

    .. math::
        y = \mathrm{act}\big(\mathrm{residual}(x) + \mathrm{shortcut}(x)\big)

    Attributes:
        residual: ``nn.Sequential(conv3x3, BN, act, conv3x3, BN)``.
        shortcut: empty ``nn.Sequential`` (identity) or ``nn.Sequential(conv1x1, BN)`` where the
            shape changes.
        act: the activation after the add (QCFS or ReLU).

    Shape:
        ``(N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride)``
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, act: Callable[[], nn.Module]
    ) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            act(),
            nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.residual(x) + self.shortcut(x))


def _check_size(name: str, input_size: int, divisor: int) -> None:
    if input_size < divisor or input_size % divisor:
        small = ", ".join(m for m, d in _SIZE_DIVISORS.items() if input_size % d == 0
                          and input_size >= d)
        raise ModelConfigError(
            f"model {name!r} halves the image {divisor.bit_length() - 1} times: input_size must "
            f"be a multiple of {divisor}, got {input_size}; use a dataset of larger images "
            f"(e.g. cifar10, 32x32) or a model that takes {input_size}x{input_size} images"
            + (f" ({small})" if small else "")
        )


def _mlp(in_channels, num_classes, input_size, act, width, hidden_layers: int = 2, **kw):
    width = width or 256
    layers: list[nn.Module] = [nn.Flatten()]
    features = in_channels * input_size * input_size
    for _ in range(hidden_layers):
        layers += [nn.Linear(features, width), act()]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


def _cnn(in_channels, num_classes, input_size, act, width, **kw):
    _check_size("cnn", input_size, _SIZE_DIVISORS["cnn"])
    width = width or 16
    side = input_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.BatchNorm2d(width),
        act(),
        nn.AvgPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.BatchNorm2d(2 * width),
        act(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * side * side, num_classes),
    )


# VGG stages as multiples of the base width (reference: 64); each stage ends in AvgPool2d(2).
_VGG_STAGES = {
    "vgg11": ((1,), (2,), (4, 4), (8, 8), (8, 8)),
    "vgg16": ((1, 1), (2, 2), (4, 4, 4), (8, 8, 8), (8, 8, 8)),
}


def _vgg(name, in_channels, num_classes, input_size, act, width, hidden=4096, dropout=0.0, **kw):
    _check_size(name, input_size, _SIZE_DIVISORS[name])
    width = width or 64
    stages: list[tuple[str, nn.Module]] = []
    channels = in_channels
    for index, stage in enumerate(_VGG_STAGES[name], start=1):
        layers: list[nn.Module] = []
        for multiple in stage:
            out = multiple * width
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), act()]
            channels = out
        layers.append(nn.AvgPool2d(2))
        stages.append((f"layer{index}", nn.Sequential(*layers)))
    side = input_size // 32
    if hidden:
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, hidden),
            act(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            act(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
    else:  # one Linear on the pooled features (the usual small-data CIFAR VGG head)
        classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, num_classes))
    stages.append(("classifier", classifier))
    model = nn.Sequential(OrderedDict(stages))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


_RESNET_BLOCKS = {
    "resnet18": ((1, 2, 4, 8), (2, 2, 2, 2), 64),
    "resnet34": ((1, 2, 4, 8), (3, 4, 6, 3), 64),
    "resnet20": ((1, 2, 4), (3, 3, 3), 16),
}


# the image side each model needs a multiple of (it halves the image log2 of it times)
_SIZE_DIVISORS: dict[str, int] = {
    "mlp": 1, "cnn": 4, "vgg11": 32, "vgg16": 32,
    **{name: 2 ** (len(multiples) - 1) for name, (multiples, _, _) in _RESNET_BLOCKS.items()},
}


def _resnet(name, in_channels, num_classes, input_size, act, width, **kw):
    multiples, blocks, default_width = _RESNET_BLOCKS[name]
    _check_size(name, input_size, _SIZE_DIVISORS[name])
    width = width or default_width
    parts: list[tuple[str, nn.Module]] = [
        (
            "conv1",
            nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                act(),
            ),
        )
    ]
    channels = width
    for stage, (multiple, count) in enumerate(zip(multiples, blocks, strict=True)):
        out = multiple * width
        stride = 1 if stage == 0 else 2
        stage_blocks = []
        for i in range(count):
            stage_blocks.append(BasicBlock(channels, out, stride if i == 0 else 1, act))
            channels = out
        parts.append((f"conv{stage + 2}_x", nn.Sequential(*stage_blocks)))
    parts += [
        ("avg_pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(channels, num_classes)),
    ]
    return nn.Sequential(OrderedDict(parts))


def _named(builder, name):
    def build(*args, **kwargs):
        return builder(name, *args, **kwargs)

    return build


_BUILDERS: dict[str, Callable[..., nn.Sequential]] = {
    "mlp": _mlp,
    "cnn": _cnn,
    "vgg11": _named(_vgg, "vgg11"),
    "vgg16": _named(_vgg, "vgg16"),
    "resnet18": _named(_resnet, "resnet18"),
    "resnet20": _named(_resnet, "resnet20"),
    "resnet34": _named(_resnet, "resnet34"),
}

MODELS: tuple[str, ...] = tuple(_BUILDERS)


def build_model(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    input_size: int,
    activation: str = "qcfs",
    levels: int = 4,
    phi: float = 0.5,
    thresh: float = 8.0,
    width: int | None = None,
    **kw,
) -> nn.Sequential:
    """Build a registered model.

    Args:
        name: one of :data:`MODELS`.
        in_channels: image channels (1 for digits/MNIST, 3 for CIFAR).
        num_classes: number of logits.
        input_size: image side in pixels (square images).
        activation: ``"qcfs"`` (trainable-threshold quantized activation) or ``"relu"``.
        levels: QCFS quantization levels ``L``.
        phi: QCFS shift (0.5 clip-floor-shift, 0 clip-floor).
        thresh: initial QCFS threshold ``lambda``.
        width: base width (hidden units for ``mlp``, first-layer channels otherwise);
            ``None`` uses the model's usual width (mlp 256, cnn 16, vgg 64, resnet18/34 64,
            resnet20 16).
        **kw: model-specific options: ``hidden`` and ``dropout`` (VGG classifier; ``hidden=0``:
            a single Linear after the last pooling),
            ``hidden_layers`` (mlp).

    Returns:
        An ``nn.Sequential`` following the layout contract of this module.

    Raises:
        ModelConfigError: unknown name or activation, or an input size the model cannot take
            (a ``ValueError`` too).
    """
    if name not in _BUILDERS:
        raise ModelConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    make_activation(activation, levels, phi, thresh)  # validates early

    def act() -> nn.Module:
        return make_activation(activation, levels, phi, thresh)

    return _BUILDERS[name](in_channels, num_classes, input_size, act, width, **kw)
