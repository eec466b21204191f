"""One walk of a torch model, shared by the converter, the NIR export and calibration.

The layout contract (:mod:`qcfs_lava.model.zoo`): a model is an ``nn.Sequential`` (nested
ones flatten) of the modules in :data:`MODULE_KINDS`, plus residual blocks recognised by
shape (``residual``, ``shortcut`` and ``act`` attributes, see :func:`is_block`).

Every consumer keeps one handler per module *kind* (``"conv"``, ``"batchnorm"``, ...), keyed
by :attr:`ModuleKind.name`; :func:`kind_of` finds a module's kind from the registry. Adding a
module type to an existing kind (say ``nn.Dropout1d`` as ``"skip"``) is one edit of
:data:`MODULE_KINDS`; a test checks that every consumer handles every kind.

Also here, because the converter and the NIR export both need them exactly alike: BatchNorm
folding (:func:`fold_batchnorm`) and the uniform kernel of an adaptive average pool
(:func:`adaptive_pool_kernel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from qcfs_lava.errors import QuantizationError, UnsupportedLayerError
from qcfs_lava.geometry import pair
from qcfs_lava.model.qcfs import QCFS

__all__ = [
    "MODULE_KINDS",
    "SUPPORTED",
    "ModuleKind",
    "adaptive_pool_kernel",
    "advice",
    "check_supported",
    "fold_batchnorm",
    "is_block",
    "kind_of",
    "leaves",
    "to_float64",
]


@dataclass(frozen=True)
class ModuleKind:
    """One family of supported source modules.

    Attributes:
        name: the key every consumer's handler table uses.
        types: the module classes of this kind.
        label: how the supported list names them in error messages.
    """

    name: str
    types: tuple[type[nn.Module], ...]
    label: str


#: The supported modules, in one place. A residual block is recognised by shape, not type.
MODULE_KINDS: tuple[ModuleKind, ...] = (
    ModuleKind("conv", (nn.Conv2d,), "Conv2d"),
    ModuleKind("linear", (nn.Linear,), "Linear"),
    ModuleKind("batchnorm", (nn.BatchNorm1d, nn.BatchNorm2d),
               "BatchNorm1d/2d (after a conv/linear)"),
    ModuleKind("activation", (QCFS,), "QCFS"),
    ModuleKind("pool", (nn.AvgPool2d, nn.AdaptiveAvgPool2d), "AvgPool2d, AdaptiveAvgPool2d"),
    ModuleKind("flatten", (nn.Flatten,), "Flatten"),
    ModuleKind("skip", (nn.Dropout, nn.Identity), "Dropout, Identity"),
)
SUPPORTED = ", ".join(k.label for k in MODULE_KINDS) + ", residual BasicBlock"


def kind_of(m: nn.Module) -> ModuleKind | None:
    """The registered kind of ``m``, or ``None`` when its type is not supported."""
    for kind in MODULE_KINDS:
        if isinstance(m, kind.types):
            return kind
    return None


def is_block(m: nn.Module) -> bool:
    """Whether ``m`` is a residual block: ``residual`` (a Sequential), ``shortcut``, ``act``."""
    return all(hasattr(m, a) for a in ("residual", "shortcut", "act")) and isinstance(
        m.residual, nn.Sequential
    )


def leaves(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Nested ``nn.Sequential`` flattened into ``(path, module)`` in forward order.

    Residual blocks stay whole (walk their ``residual``/``shortcut`` with a prefix). A module
    that is not a Sequential is one leaf, named ``prefix`` or else its type.
    """
    if not isinstance(model, nn.Sequential):
        return [(prefix or type(model).__name__, model)]
    out = []
    for name, child in model.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            out += leaves(child, path)
        else:
            out.append((path, child))
    return out


def advice(m: nn.Module) -> str:
    """What to do about an unsupported module (the error message's hint)."""
    if isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return "max pooling has no exact spiking equivalent: retrain with AvgPool2d"
    if isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU)):
        return ("conversion needs QCFS activations with trained thresholds: "
                "use qcfs_lava.model.qcfs.replace_relu_with_qcfs and fine-tune")
    return "replace it with a supported module"


def check_supported(model: nn.Module, *, consumer: str = "convert",
                    action: str = "convert") -> None:
    """Raise one :class:`UnsupportedLayerError` naming every unsupported module of ``model``.

    Args:
        model: the model to check (must be an ``nn.Sequential``).
        consumer: who asks, for the message (``"convert"``, ``"NIR export"``).
        action: the verb of the message (``"cannot {action} these modules"``).
    """
    if not isinstance(model, nn.Sequential):
        raise UnsupportedLayerError(
            f"{consumer} expects an nn.Sequential model (the registry's models are), got "
            f"{type(model).__name__}"
        )
    bad = []

    def visit(items: list[tuple[str, nn.Module]]) -> None:
        for path, m in items:
            if is_block(m):
                visit(leaves(m.residual, f"{path}.residual"))
                visit(leaves(m.shortcut, f"{path}.shortcut"))
                visit([(f"{path}.act", m.act)])
            elif kind_of(m) is None:
                bad.append(f"{path} ({type(m).__name__}): {advice(m)}")

    visit(leaves(model))
    if bad:
        raise UnsupportedLayerError(
            f"cannot {action} these modules:\n  " + "\n  ".join(bad) + f"\nSupported: {SUPPORTED}."
        )


def to_float64(t) -> np.ndarray:
    """A tensor (parameter or buffer) as a float64 numpy array."""
    return t.detach().double().cpu().numpy()


def fold_batchnorm(path: str, bn: nn.Module, weight: np.ndarray, bias: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference BatchNorm into the conv/linear before it (float64, exact formula).

    ``w' = w * s`` per output channel and ``b' = (b - mean) * s + beta`` with
    ``s = gamma / sqrt(var + eps)``.

    Raises:
        UnsupportedLayerError: no running statistics, or a size mismatch.
        QuantizationError: a NaN or infinite scale (a broken training run).
    """
    if bn.running_mean is None or not bn.track_running_stats:
        raise UnsupportedLayerError(f"{path}: BatchNorm without running statistics")
    mean, var = to_float64(bn.running_mean), to_float64(bn.running_var)
    gamma = np.ones_like(mean) if bn.weight is None else to_float64(bn.weight)
    beta = np.zeros_like(mean) if bn.bias is None else to_float64(bn.bias)
    scale = gamma / np.sqrt(var + bn.eps)
    if not np.all(np.isfinite(scale)):
        raise QuantizationError(f"{path} contains NaN or inf values; the model cannot be "
                                "converted (check the training run)")
    if scale.shape[0] != weight.shape[0]:
        raise UnsupportedLayerError(f"{path}: BatchNorm size does not match the layer before it")
    weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return weight, (bias - mean) * scale + beta


def adaptive_pool_kernel(path: str, m: nn.Module, h: int, w: int) -> tuple[int, int]:
    """Kernel (= stride) of an ``AdaptiveAvgPool2d`` on an ``h x w`` map, if it is uniform."""
    out = pair(m.output_size)
    if h % out[0] or w % out[1]:
        raise UnsupportedLayerError(f"{path}: AdaptiveAvgPool2d{out} on {h}x{w} is not "
                                    "a uniform pooling")
    return (h // out[0], w // out[1])
