r"""What a qcfs-lava NIR file means beyond NIR itself: the namespaced metadata.

NIR 1.0.8's ``IF`` node integrates ``v += r * I``, fires when ``v > v_threshold`` and resets
*to* ``v_reset``; every sample starts at ``v = 0``; a graph says nothing about the number of
steps, how a static image is presented or how the output becomes a prediction. The float SNN
(docs/contract.md, section 2) differs on each point, so a qcfs-lava NIR file carries the rest
under the metadata key :data:`NAMESPACE` (``"qcfs_lava"``), with a format :data:`VERSION`.

Graph metadata, ``graph.metadata["qcfs_lava"]``:

- ``format``: ``"qcfs-lava-nir"``; ``version``: :data:`VERSION`.
- ``neuron``: ``"if-subtract-ge"`` (every ``IF`` node follows the dynamics below).
- ``input``: ``"repeat"``: the same (normalised) image enters the ``Input`` at every step.
- ``input_normalization``: ``{"scale": 1/255, "mean": [...], "std": [...]}``; the ``Input``
  receives ``(pixels * scale - mean) / std`` per channel.
- ``readout``: ``"mean"``: ``logits(T) = (1/T) sum_t Output(t)``; prediction = argmax.
- ``steps``: the ``T`` the network was exported for (only when one was given).
- ``levels``, ``phi``, ``model``, ``dataset``, ``class_names`` (JSON text),
  ``checkpoint_sha256``, ``qcfs_lava_version``: provenance.

``IF`` node metadata, ``node.metadata["qcfs_lava"]``:

- ``version``; ``reset``: ``"subtract"``; ``fire``: ``"ge"``.
- ``v_init``: the membrane at the start of every sample (``phi * v_threshold``).
- ``spike_amplitude``: the float SNN's spike height ``theta``; it is already multiplied into
  the weights of every node the ``IF`` node feeds, so the node itself emits 0 or 1.
- ``source``: the module of the torch model it comes from.

With ``r = 1`` the neuron of every ``IF`` node is, per step :math:`t` and neuron:

.. math::
    v(0) = v_{init};\quad v \leftarrow v + I(t);\quad s(t) = [v \ge v_{th}];\quad
    v \leftarrow v - s(t)\, v_{th}

where :math:`I(t)` is the sum over the node's incoming edges (two edges into one node are a
residual add). Every other node is stateless and acts within the same step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcfs_lava.errors import NirError

__all__ = [
    "FORMAT",
    "NAMESPACE",
    "VERSION",
    "GraphSemantics",
    "NeuronSemantics",
    "graph_semantics",
    "neuron_semantics",
    "read_nir",
    "require_nir",
    "write_nir",
]

NAMESPACE = "qcfs_lava"
FORMAT = "qcfs-lava-nir"
VERSION = 1
NIR_VERSION = "1.0.8"
INSTALL_HINT = "install the optional NIR packages: pip install 'qcfs-lava[nir]'"


def require_nir():
    """The ``nir`` module, or :class:`NirError` saying how to install it."""
    try:
        import nir
    except ImportError as exc:
        raise NirError(f"the nir package is not installed ({exc}); {INSTALL_HINT}") from exc
    return nir


def _scalar(value: Any) -> Any:
    """A value read back from HDF5 metadata as a plain Python object."""
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class NeuronSemantics:
    """The dynamics of one ``IF`` node (see the module docstring).

    Attributes:
        v_threshold: threshold (one value for the whole node).
        v_init: membrane at the start of every sample.
        amplitude: the float SNN's spike height, folded into the consumers' weights.
    """

    v_threshold: float
    v_init: float
    amplitude: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.v_threshold) and self.v_threshold > 0):
            raise NirError(f"IF threshold must be positive and finite, got {self.v_threshold}")
        if not math.isfinite(self.v_init):
            raise NirError(f"IF v_init must be finite, got {self.v_init}")


@dataclass(frozen=True)
class GraphSemantics:
    """What the graph metadata says about running the network.

    Attributes:
        steps: the exported ``T``, or ``None`` when the file records none.
        mean, std: per-channel input normalisation (of ``pixels / 255``).
        levels, phi: the QCFS parameters of the source model.
        class_names: one name per output.
        extra: the remaining provenance fields.
    """

    steps: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    levels: int
    phi: float
    class_names: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def resolve_steps(self, steps: int | None, where: str = "the NIR file") -> int:
        """``steps`` if given, else the exported ``T``; :class:`NirError` when neither."""
        t = self.steps if steps is None else int(steps)
        if t is None:
            raise NirError(f"{where} records no number of steps T (exported without --steps): "
                           "pass the steps to run")
        if t < 1:
            raise NirError(f"steps must be >= 1, got {t}")
        return t


def graph_semantics(graph, where: str = "graph") -> GraphSemantics:
    """Read and check the graph's ``qcfs_lava`` metadata.

    Raises:
        NirError: the graph was not written by qcfs-lava, or by a newer format version.
    """
    meta = getattr(graph, "metadata", None) or {}
    ours = meta.get(NAMESPACE) if isinstance(meta, dict) else None
    if not isinstance(ours, dict) or _scalar(ours.get("format")) != FORMAT:
        raise NirError(
            f"{where}: no '{NAMESPACE}' metadata of format {FORMAT!r}; only NIR graphs written "
            "by `qcfs-lava export --format nir` carry the neuron semantics this runner needs"
        )
    version = int(_scalar(ours.get("version", -1)))
    if version < 1 or version > VERSION:
        raise NirError(f"{where}: qcfs-lava NIR metadata version {version}; this qcfs-lava "
                       f"reads versions 1..{VERSION}: upgrade qcfs-lava")
    for key, want in (("neuron", "if-subtract-ge"), ("input", "repeat"), ("readout", "mean")):
        if _scalar(ours.get(key)) != want:
            raise NirError(f"{where}: metadata {NAMESPACE}.{key} is {ours.get(key)!r}; this "
                           f"qcfs-lava runs only {want!r}")
    norm = ours.get("input_normalization") or {}
    steps = ours.get("steps")
    names = _scalar(ours.get("class_names", "[]"))
    known = {"format", "version", "neuron", "input", "readout", "input_normalization", "steps",
             "levels", "phi", "class_names"}
    return GraphSemantics(
        steps=None if steps is None else int(_scalar(steps)),
        mean=tuple(float(v) for v in np.atleast_1d(norm.get("mean", [0.0]))),
        std=tuple(float(v) for v in np.atleast_1d(norm.get("std", [1.0]))),
        levels=int(_scalar(ours.get("levels", 0))),
        phi=float(_scalar(ours.get("phi", 0.0))),
        class_names=tuple(json.loads(names)) if isinstance(names, str) else (),
        extra={k: _scalar(v) for k, v in ours.items() if k not in known},
    )


def neuron_semantics(name: str, node) -> NeuronSemantics:
    """Dynamics of the ``IF`` node ``name`` from its parameters and ``qcfs_lava`` metadata.

    Raises:
        NirError: metadata missing, a reset/fire rule other than ours, ``r != 1`` or a
            threshold that differs between neurons.
    """
    meta = (getattr(node, "metadata", None) or {}).get(NAMESPACE)
    if not isinstance(meta, dict):
        raise NirError(f"IF node {name!r} has no '{NAMESPACE}' metadata (reset, fire rule, "
                       "initial potential); it was not written by qcfs-lava")
    if _scalar(meta.get("reset")) != "subtract" or _scalar(meta.get("fire")) != "ge":
        raise NirError(f"IF node {name!r}: reset {meta.get('reset')!r}, fire "
                       f"{meta.get('fire')!r}; this runner needs 'subtract' and 'ge'")
    r = np.asarray(node.r, dtype=np.float64)
    th = np.asarray(node.v_threshold, dtype=np.float64)
    if not np.all(r == 1.0):
        raise NirError(f"IF node {name!r}: r must be 1 everywhere (qcfs-lava writes r = 1)")
    if th.size == 0 or not np.all(th == th.reshape(-1)[0]):
        raise NirError(f"IF node {name!r}: v_threshold must be one value for the whole node")
    return NeuronSemantics(float(th.reshape(-1)[0]), float(_scalar(meta["v_init"])),
                           float(_scalar(meta.get("spike_amplitude", 1.0))))


def read_nir(path: str | Path):
    """``nir.read(path)`` with the file checked first and errors made typed.

    Raises:
        NirError: the file is missing or not a readable NIR file, or nir is not installed.
    """
    nir = require_nir()
    path = Path(path)
    if not path.is_file():
        raise NirError(f"NIR file {path} not found; write one with `qcfs-lava export CKPT "
                       "--format nir --out FILE.nir`")
    from qcfs_lava.safe_hdf5 import HDF5GuardError, verify_hdf5

    try:
        verify_hdf5(path)  # a digest match, or a child process parses it first
    except HDF5GuardError as exc:
        raise NirError(f"cannot read {path} as a NIR file: {exc}; the file is damaged or not "
                       "NIR, export it again (or copy it again)") from None
    except OSError as exc:
        raise NirError(f"{path}: cannot be read ({exc}); check the file") from exc
    try:
        return nir.read(path)
    except Exception as exc:  # h5py/nir raise many types for foreign or corrupt files
        raise NirError(f"cannot read {path} as a NIR file: {type(exc).__name__}: "
                       f"{str(exc)[:200]}; the file is corrupt or not NIR") from exc


def write_nir(graph, path: str | Path) -> Path:
    """Write ``graph`` to ``path`` atomically.

    ``nir.write`` builds the file in memory; a 512-byte HDF5 user block holding a digest of
    the rest is put in front (:func:`qcfs_lava.safe_hdf5.prepend_digest`; every HDF5 reader,
    ``nir.read`` included, skips it), and the bytes are written with ordinary I/O, so a full
    disk is an ``OSError`` and :func:`read_nir` refuses a damaged file before parsing it.
    """
    import io

    from qcfs_lava.io import write_bytes
    from qcfs_lava.safe_hdf5 import prepend_digest

    nir = require_nir()
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    data, _ = prepend_digest(buffer.getvalue())
    return write_bytes(path, data)
