r"""qcfs-lava's own import of a NIR file: a torch module that runs the float SNN again.

:func:`from_nir` turns every node into a torch module (``Conv2d``, ``Linear``, sum pooling,
``Flatten``, and :class:`NirIFNeuron` for ``IF`` nodes) and wires them by the graph's edges;
:class:`NirNetwork` computes one time step per call, so it runs wherever torch runs (GPU,
batches) and can be fine-tuned like any module.

Example:
    >>> net = from_nir("model.nir")
    >>> outputs = net.run(x_float, steps=8)   # (8, N, classes)
    >>> predictions = outputs.mean(0).argmax(1)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qcfs_lava.errors import NirError
from qcfs_lava.geometry import pair
from qcfs_lava.nir_exchange.executor import check_graph, topological_order
from qcfs_lava.nir_exchange.semantics import (
    GraphSemantics,
    neuron_semantics,
    read_nir,
    require_nir,
)
from qcfs_lava.snn import IFNeuron

__all__ = ["NirIFNeuron", "NirNetwork", "SumPool2d", "from_nir"]


class NirIFNeuron(IFNeuron):
    r"""The ``IF`` node of a qcfs-lava NIR graph: the float SNN's :class:`~qcfs_lava.snn.IFNeuron`
    with unit spikes and an initial membrane given as a value.

    .. math::
        v(0) = v_{init};\quad v \leftarrow v + x;\quad s = [v \ge v_{th}];\quad
        v \leftarrow v - s\,v_{th}

    Args:
        v_threshold: threshold.
        v_init: membrane at the start of every sample.
    """

    def __init__(self, v_threshold: float, v_init: float) -> None:
        super().__init__(float(v_threshold), v_init=v_init, unit_spikes=True)

    @property
    def v_threshold(self) -> torch.Tensor:
        return self.thresh


class SumPool2d(nn.Module):
    """Sum over each pooling window (NIR's ``SumPool2d``; zero padding).

    Shape:
        ``(N, C, H, W) -> (N, C, H', W')``.
    """

    def __init__(self, kernel_size, stride, padding) -> None:
        super().__init__()
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.stride = tuple(int(s) for s in stride)
        self.padding = tuple(int(p) for p in padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding,
                            count_include_pad=True, divisor_override=1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _module(nir, name: str, node) -> nn.Module:
    """The torch module for one NIR node."""
    if isinstance(node, nir.Conv2d):
        w = torch.as_tensor(np.asarray(node.weight, np.float32))
        if isinstance(node.padding, str):
            raise NirError(f"node {name!r}: string padding is not supported")
        m = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]),
                      stride=pair(node.stride), padding=pair(node.padding),
                      dilation=pair(node.dilation), groups=int(node.groups), bias=True)
        m.weight.data.copy_(w)
        m.bias.data.copy_(torch.as_tensor(np.asarray(node.bias, np.float32)))
        return m
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = torch.as_tensor(np.asarray(node.weight, np.float32))
        m = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        m.weight.data.copy_(w)
        if isinstance(node, nir.Affine):
            m.bias.data.copy_(torch.as_tensor(np.asarray(node.bias, np.float32)))
        return m
    if isinstance(node, nir.SumPool2d):
        return SumPool2d(pair(node.kernel_size), pair(node.stride), pair(node.padding))
    if isinstance(node, nir.Flatten):
        nd = len(node.input_type["input"])
        return nn.Flatten(node.start_dim % nd + 1, node.end_dim % nd + 1)
    if isinstance(node, nir.IF):
        sem = neuron_semantics(name, node)
        return NirIFNeuron(sem.v_threshold, sem.v_init)
    if isinstance(node, (nir.Input, nir.Output)):
        return nn.Identity()
    raise NirError(f"node {name!r}: NIR type {type(node).__name__} cannot be imported "
                   "(supported: Input, Conv2d, Affine, Linear, SumPool2d, Flatten, IF, Output)")


class NirNetwork(nn.Module):
    """A qcfs-lava NIR graph as a torch module; each call computes one time step.

    Attributes:
        nodes: one module per NIR node (same names).
        order: the nodes in topological order.
        sources: per node, the nodes whose outputs it sums.
        semantics: the graph metadata (steps, input normalisation, ...).

    Shape:
        ``(N, *input_shape) -> (N, num_classes)`` per step.
    """

    def __init__(self, nodes: dict[str, nn.Module], edges: list[tuple[str, str]],
                 input_name: str, output_name: str, semantics: GraphSemantics) -> None:
        super().__init__()
        self.nodes = nn.ModuleDict(nodes)
        self.sources = {n: [s for s, d in edges if d == n] for n in nodes}
        self.input_name, self.output_name = input_name, output_name
        self.semantics = semantics
        self.order = [n for n in topological_order(nodes, edges) if n != input_name]

    def neurons(self) -> list[NirIFNeuron]:
        return [m for m in self.nodes.values() if isinstance(m, NirIFNeuron)]

    def reset(self) -> None:
        """Membranes back to ``v_init`` (call before each new input)."""
        for m in self.neurons():
            m.reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for name in self.order:
            srcs = self.sources[name]
            total = values[srcs[0]]
            for s in srcs[1:]:
                total = total + values[s]
            values[name] = self.nodes[name](total)
        return values[self.output_name]

    @torch.no_grad()
    def run(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Reset, then run ``steps`` steps on the same input (default: the recorded ``T``).

        Shape:
            ``x``: ``(N, *input_shape)``; returns ``(steps, N, num_classes)``.
        """
        t = self.semantics.resolve_steps(steps)
        self.reset()
        return torch.stack([self(x) for _ in range(t)])


def from_nir(graph) -> NirNetwork:
    """Import a qcfs-lava NIR graph (or file) as a :class:`NirNetwork`.

    Raises:
        NirError: not a qcfs-lava graph, an unsupported node type or a cycle.
    """
    nir = require_nir()
    if isinstance(graph, (str, Path)):
        graph = read_nir(graph)
    sem = check_graph(graph)  # what the reference executor accepts, nothing else
    ins = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise NirError(f"the graph needs exactly one Input and one Output node, has {ins} and "
                       f"{outs}")
    modules = {name: _module(nir, name, node) for name, node in graph.nodes.items()}
    return NirNetwork(modules, list(graph.edges), ins[0], outs[0], sem).eval()
