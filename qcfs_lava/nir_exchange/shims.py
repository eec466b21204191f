"""Shims that load a qcfs-lava NIR file into snntorch and sinabs with the right semantics.

Neither library's own importer runs these files faithfully (read from their sources):

- snntorch 1.0.0 ``import_from_nir`` maps ``IF`` to ``snn.Leaky(beta=0.9, ...)`` (a leak)
  built with ``init_hidden=False``, so the layer returns a ``(spikes, membrane)`` tuple that
  the next node cannot take; it maps ``Flatten`` without shifting for the batch axis and has
  no ``SumPool2d``; the membrane starts at 0.
- sinabs 3.1.3 ``from_nir`` maps ``IF`` to ``IAFSqueeze`` with ``MultiSpike`` (several spikes
  per step) and ``min_v_mem = -v_threshold`` (a floor on the membrane), starting at 0; it runs
  the graph through ``nirtorch.load``, whose depth-first execution order evaluates the node
  after a residual add before both of its inputs exist.

The shims keep each library's own neuron model and configure it:

- snntorch: ``snn.Leaky(beta=1, reset_mechanism="subtract", reset_delay=True)`` with a spike
  function that fires on ``mem - threshold >= 0``, the membrane set to ``v_init`` before the
  first step; the graph runs one step per call through ``nirtorch.nir_to_torch``.
- sinabs: ``IAFSqueeze`` with ``SingleSpike`` (fires on ``>=``), ``MembraneSubtract``, no
  membrane floor, the state reset to ``v_init``; conv/linear/pool/flatten nodes use sinabs's
  own mapping; the graph runs through ``nirtorch.nir_to_torch`` (topological order, summed
  inputs) on the time-folded batch ``(N*T, ...)``, as sinabs layers expect.

Both return the ``Output`` node at every step, ``(steps, N, classes)``, like
:func:`qcfs_lava.nir_exchange.executor.run_nir`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from qcfs_lava.errors import NirError
from qcfs_lava.geometry import pair
from qcfs_lava.nir_exchange.executor import check_graph
from qcfs_lava.nir_exchange.importer import SumPool2d
from qcfs_lava.nir_exchange.semantics import (
    INSTALL_HINT,
    neuron_semantics,
    read_nir,
    require_nir,
)

__all__ = ["run_sinabs", "run_snntorch", "sinabs_module", "snntorch_module"]


def _graph(graph):
    require_nir()
    return read_nir(graph) if isinstance(graph, (str, Path)) else graph


def _import(name: str):
    try:
        return __import__(name)
    except ImportError as exc:
        raise NirError(f"{name} is not installed ({exc}); {INSTALL_HINT}") from exc


def _torch_layer(nir, node) -> nn.Module:
    """Conv2d / Affine / Linear as plain torch layers, bias included."""
    w = torch.as_tensor(np.asarray(node.weight, np.float32))
    if isinstance(node, nir.Conv2d):
        m = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]),
                      stride=pair(node.stride), padding=pair(node.padding),
                      dilation=pair(node.dilation), groups=int(node.groups))
    else:
        m = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
    m.weight.data.copy_(w)
    if m.bias is not None:
        m.bias.data.copy_(torch.as_tensor(np.asarray(node.bias, np.float32)))
    return m


def _flatten(node) -> nn.Flatten:
    nd = len(node.input_type["input"])  # NIR shapes have no batch axis
    return nn.Flatten(node.start_dim % nd + 1, node.end_dim % nd + 1)


def _check_neurons(graph) -> None:
    """Every ``IF`` node carries our semantics (errors name the node)."""
    nir = require_nir()
    for name, node in graph.nodes.items():
        if isinstance(node, nir.IF):
            neuron_semantics(name, node)


# ---- snntorch ------------------------------------------------------------------------------
def _ge(mem_shift: torch.Tensor) -> torch.Tensor:
    """Spike function for snntorch: fire on ``mem - threshold >= 0`` (the contract's ``>=``)."""
    return (mem_shift >= 0).to(mem_shift.dtype)


class SnntorchIF(nn.Module):
    """An ``IF`` node as snntorch's ``Leaky`` neuron with beta 1 and reset by subtraction.

    ``Leaky`` with ``reset_delay=True`` subtracts the threshold of step ``t``'s spike at step
    ``t+1`` before adding the input; the spikes equal those of an immediate reset. The
    membrane starts at ``v_init``; call :meth:`reset` before each new input.
    """

    def __init__(self, v_threshold: float, v_init: float) -> None:
        super().__init__()
        snn = _import("snntorch")
        self.leaky = snn.Leaky(beta=1.0, threshold=float(v_threshold), spike_grad=_ge,
                               reset_mechanism="subtract", reset_delay=True, init_hidden=False)
        self.v_init = float(v_init)
        self.fresh = True

    def reset(self) -> None:
        self.fresh = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fresh:
            self.leaky.mem = torch.full_like(x, self.v_init)
            self.fresh = False
        spk, _ = self.leaky(x)
        return spk


def snntorch_module(graph, *, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Load a qcfs-lava NIR graph (or file) into snntorch (one step per call).

    Returns:
        ``nirtorch``'s ``GraphModule``; ``module(x)`` returns ``(output, state)`` for one step.
        Reset the neurons (:class:`SnntorchIF`) before each new input, or use
        :func:`run_snntorch`.
    """
    nir = require_nir()
    nirtorch = _import("nirtorch")
    graph = _graph(graph)
    check_graph(graph)  # only graphs the reference executor accepts
    _check_neurons(graph)
    node_map = {
        nir.IF: _snntorch_if,
        nir.Conv2d: lambda n: _torch_layer(nir, n),
        nir.Affine: lambda n: _torch_layer(nir, n),
        nir.Linear: lambda n: _torch_layer(nir, n),
        nir.SumPool2d: lambda n: SumPool2d(pair(n.kernel_size), pair(n.stride),
                                           pair(n.padding)),
        nir.Flatten: _flatten,
    }
    return nirtorch.nir_to_torch(graph, node_map, dtype=dtype)


def _snntorch_if(node) -> SnntorchIF:
    sem = neuron_semantics("IF", node)
    return SnntorchIF(sem.v_threshold, sem.v_init)


@torch.no_grad()
def run_snntorch(graph, x: torch.Tensor, steps: int | None = None, *,
                 dtype: torch.dtype = torch.float32, batch_size: int = 256) -> np.ndarray:
    """Run a qcfs-lava NIR graph in snntorch; the ``Output`` at every step.

    Args:
        graph: ``nir.NIRGraph`` or path.
        x: normalised inputs ``(N, *input_shape)``.
        steps: ``T`` (default: the recorded one).

    Returns:
        ``(steps, N, classes)`` array.
    """
    graph = _graph(graph)
    t = check_graph(graph).resolve_steps(steps)
    module = snntorch_module(graph, dtype=dtype)
    neurons = [m for m in module.modules() if isinstance(m, SnntorchIF)]
    x = torch.as_tensor(x).to(dtype)
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        for m in neurons:
            m.reset()
        out.append(torch.stack([module(xb)[0] for _ in range(t)]))
    return torch.cat(out, 1).numpy()


# ---- sinabs --------------------------------------------------------------------------------
def _sinabs_if(node, steps: int) -> nn.Module:
    from sinabs.activation import MembraneSubtract, SingleSpike
    from sinabs.layers import IAFSqueeze

    sem = neuron_semantics("IF", node)

    class SinabsIF(IAFSqueeze):
        """sinabs's IAF with one spike per step on ``>=``, subtraction, ``v(0) = v_init``."""

        def reset_states(self, randomize: bool = False, value_ranges=None) -> None:
            super().reset_states(randomize, value_ranges)
            if self.is_state_initialised():
                self.v_mem.fill_(sem.v_init)

    return SinabsIF(num_timesteps=steps, spike_threshold=torch.tensor(sem.v_threshold),
                    spike_fn=SingleSpike, reset_fn=MembraneSubtract(), min_v_mem=None)


def sinabs_module(graph, steps: int | None = None) -> nn.Module:
    """Load a qcfs-lava NIR graph (or file) into sinabs, for ``steps`` steps per sample.

    float32 only: sinabs's spike functions return float32 spikes.

    Returns:
        ``nirtorch``'s ``GraphModule`` taking the time-folded input ``(N*T, *input_shape)``
        (sample-major) and returning ``(output, state)`` with output ``(N*T, classes)``.
    """
    nir = require_nir()
    nirtorch = _import("nirtorch")
    _import("sinabs")
    from sinabs.nir import _import_sinabs_module

    graph = _graph(graph)
    t = check_graph(graph).resolve_steps(steps)  # only graphs the reference executor accepts
    _check_neurons(graph)

    def sinabs_layer(node):
        return _import_sinabs_module(node, batch_size=None, num_timesteps=t)

    node_map = {
        nir.IF: lambda n: _sinabs_if(n, t),
        nir.Conv2d: sinabs_layer,
        nir.Affine: sinabs_layer,
        nir.SumPool2d: sinabs_layer,
        nir.Flatten: sinabs_layer,
    }
    return nirtorch.nir_to_torch(graph, node_map, dtype=torch.float32)


@torch.no_grad()
def run_sinabs(graph, x: torch.Tensor, steps: int | None = None, *,
               batch_size: int = 256) -> np.ndarray:
    """Run a qcfs-lava NIR graph in sinabs; the ``Output`` at every step.

    The input is repeated ``T`` times along a time axis folded into the batch, as sinabs's
    ``*Squeeze`` layers expect. float32 (see :func:`sinabs_module`).

    Returns:
        ``(steps, N, classes)`` array.
    """
    graph = _graph(graph)
    t = check_graph(graph).resolve_steps(steps)
    module = sinabs_module(graph, t)
    from sinabs.layers import StatefulLayer

    neurons = [m for m in module.modules() if isinstance(m, StatefulLayer)]
    x = torch.as_tensor(x).to(torch.float32)
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        n = len(xb)
        for m in neurons:
            m.reset_states()
        folded = xb.unsqueeze(1).expand(n, t, *xb.shape[1:]).reshape(n * t, *xb.shape[1:])
        y = module(folded)[0].reshape(n, t, -1)
        out.append(y.transpose(0, 1))
    return torch.cat(out, 1).numpy()
