"""From a trained QCFS model to an :class:`~qcfs_lava.network.IntegerNetwork`.

Two stages, one module each:

1. **fold** (:mod:`qcfs_lava.convert.folding`, exact, float64): walk the model
   (:mod:`qcfs_lava.model.walk`) with one small handler per module kind; BatchNorm and
   AvgPool fold into the neighbouring conv/linear, residual blocks become a layer with two
   incoming synapses. Every unsupported module is collected and reported in one error.
2. **quantize** (:mod:`qcfs_lava.convert.quantization`, ``docs/contract.md`` section 3): per
   layer one weight step and one exponent, the input normalisation folded into the first
   layer so the network takes uint8 pixels.

The settings of a conversion are a value, :class:`ConversionConfig`, passed in.
"""

from __future__ import annotations

from torch import nn

from qcfs_lava.convert.config import LAYER_COPIES_LIMIT, ConversionConfig
from qcfs_lava.convert.folding import (
    HANDLERS,
    SUPPORTED,
    FloatLayer,
    FloatSynapse,
    ModuleHandler,
    check_supported,
    fold,
    fold_checked,
    handler_for,
)
from qcfs_lava.convert.quantization import (
    OUTPUT_HEADROOM_STEPS,
    VTH_MANT_TARGET,
    LayerQuantization,
    QuantizationReport,
    quantize,
)
from qcfs_lava.errors import UnsupportedLayerError
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.model.walk import adaptive_pool_kernel
from qcfs_lava.network import IntegerNetwork

__all__ = [
    "HANDLERS",
    "LAYER_COPIES_LIMIT",
    "OUTPUT_HEADROOM_STEPS",
    "SUPPORTED",
    "VTH_MANT_TARGET",
    "ConversionConfig",
    "FloatLayer",
    "FloatSynapse",
    "LayerQuantization",
    "ModuleHandler",
    "QuantizationReport",
    "adaptive_pool_kernel",
    "check_supported",
    "convert",
    "fold",
    "handler_for",
    "qcfs_params",
    "quantize",
]


def qcfs_params(model: nn.Module) -> tuple[int, float]:
    """The (levels, phi) shared by every QCFS module of ``model``."""
    found = {(m.levels, m.phi) for m in model.modules() if isinstance(m, QCFS)}
    if len(found) != 1:
        raise UnsupportedLayerError(
            "the model must contain QCFS activations that all share one (levels, phi); "
            f"found {sorted(found) or 'none'}"
        )
    return found.pop()


def convert(
    model: nn.Module,
    input_shape: tuple[int, ...],
    mean=0.0,
    std=1.0,
    *,
    metadata: dict | None = None,
    layer_copies: int | None = None,
    config: ConversionConfig | None = None,
) -> tuple[IntegerNetwork, QuantizationReport]:
    """Convert a trained QCFS model into an integer spiking network.

    Args:
        model: an ``nn.Sequential`` of supported modules (the registry's models and imported
            reference checkpoints are). It is not modified.
        input_shape: shape of one input sample, ``(C, H, W)`` or ``(N,)``.
        mean, std: the model's input normalisation, per channel: its float input is
            ``(x_uint8 / 255 - mean) / std``. It folds into the first layer.
        metadata: JSON-serializable facts to record in the network (class names, ...).
        layer_copies: ``k >= 1``: every single-synapse layer on a grid ``k`` times finer, its
            weights carried by up to ``k`` exact synapse copies; overrides
            ``config.layer_copies`` (``None``: the config's).
        config: the conversion settings (:class:`ConversionConfig`; ``None``: the defaults,
            Loihi's 8-bit weights without copies).

    Returns:
        ``(network, report)``: the validated :class:`IntegerNetwork` and the per-layer
        :class:`QuantizationReport`.
    """
    config = (config or ConversionConfig()).with_layer_copies(layer_copies)
    check_supported(model)
    levels, phi = qcfs_params(model)
    layers = fold_checked(model, input_shape)
    return quantize(layers, input_shape, mean, std, levels=levels, phi=phi, metadata=metadata,
                    config=config)

