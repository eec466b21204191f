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
        if steps is not None and (isinstance(steps, bool) or int(steps) != steps):
            raise NirError(f"steps must be a whole number, got {steps!r}")
        t = self.steps if steps is None else int(steps)
        if t is None:
            raise NirError(f"{where} records no number of steps T (exported without --steps): "
                           "pass the steps to run")
        if t < 1:
            raise NirError(f"steps must be >= 1, got {t}")
        return t


def _checked(where: str):
    """Turn the value checks' :class:`InvalidValueError` into a :class:`NirError` naming
    ``where`` and the fix."""
    import contextlib

    from qcfs_lava.validate import InvalidValueError

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except InvalidValueError as exc:
            raise NirError(f"{where}: {exc}; the file is damaged or was not written by "
                           "qcfs-lava: export it again") from None
    return guard()


def _number_list(value: Any, what: str, positive: bool = False) -> tuple[float, ...]:
    from qcfs_lava.validate import InvalidValueError, finite_float

    arr = np.asarray(value)
    if arr.ndim > 1 or arr.size == 0 or arr.size > 4096 or arr.dtype.kind not in "iuf":
        raise InvalidValueError(f"{what} must be a list of numbers, got {arr.dtype} of shape "
                                f"{arr.shape}")
    out = tuple(finite_float(v, f"{what}[{i}]") for i, v in enumerate(arr.reshape(-1)))
    if positive and any(v <= 0 for v in out):
        raise InvalidValueError(f"{what} must be positive, got {list(out)}")
    return out


def graph_semantics(graph, where: str = "graph") -> GraphSemantics:
    """Read and check the graph's ``qcfs_lava`` metadata, with the typed, range-checked rules
    of the NetX reader (:mod:`qcfs_lava.validate`): nothing is coerced (steps 2.7 is not 2),
    every number is finite, a recorded ``T`` is at most :data:`~qcfs_lava.validate.STEPS_MAX`.

    Raises:
        NirError: the graph was not written by qcfs-lava, by a newer format version, or its
            metadata has a value of the wrong type or range (the message names it).
    """
    from qcfs_lava.validate import (
        LEVELS_MAX,
        STEPS_MAX,
        InvalidValueError,
        check_recorded_metadata,
        exact_int,
        finite_float,
        strict_json,
    )

    meta = getattr(graph, "metadata", None) or {}
    ours = meta.get(NAMESPACE) if isinstance(meta, dict) else None
    if not isinstance(ours, dict) or _scalar(ours.get("format")) != FORMAT:
        raise NirError(
            f"{where}: no '{NAMESPACE}' metadata of format {FORMAT!r}; only NIR graphs written "
            "by `qcfs-lava export --format nir` carry the neuron semantics this runner needs"
        )
    ours = {k: _scalar(v) if not isinstance(v, dict) else v for k, v in ours.items()}
    with _checked(where):
        for key in ("version", "steps", "levels", "phi"):  # one value, not a list of one
            if key in ours and (isinstance(ours[key], (list, tuple)) or np.ndim(ours[key]) > 0):
                raise InvalidValueError(f"metadata {NAMESPACE}.{key} must be one number, got "
                                        f"{ours[key]!r}"[:200])
        version = exact_int(ours.get("version"), f"metadata {NAMESPACE}.version")
        if version < 1 or version > VERSION:
            raise NirError(f"{where}: qcfs-lava NIR metadata version {version}; this qcfs-lava "
                           f"reads versions 1..{VERSION}: upgrade qcfs-lava")
        for key, want in (("neuron", "if-subtract-ge"), ("input", "repeat"),
                          ("readout", "mean")):
            if ours.get(key) != want:
                raise NirError(f"{where}: metadata {NAMESPACE}.{key} is {ours.get(key)!r}; this "
                               f"qcfs-lava runs only {want!r}")
        norm = ours.get("input_normalization", {})
        if not isinstance(norm, dict):
            raise InvalidValueError(f"{NAMESPACE}.input_normalization must be a group")
        norm = {k: _scalar(v) for k, v in norm.items()}
        mean = _number_list(norm.get("mean", [0.0]), "input_normalization.mean")
        std = _number_list(norm.get("std", [1.0]), "input_normalization.std", positive=True)
        if len(mean) != len(std):
            raise InvalidValueError(f"input_normalization has {len(mean)} means for {len(std)} "
                                    "stds")
        if "scale" in norm:
            scale = finite_float(norm["scale"], "input_normalization.scale")
            if abs(scale - 1.0 / 255.0) > 1e-9:
                raise InvalidValueError(f"input_normalization.scale is {scale}; qcfs-lava "
                                        "presents pixels as x / 255")
        steps = ours.get("steps")
        if steps is not None:
            steps = exact_int(steps, f"metadata {NAMESPACE}.steps", 1, STEPS_MAX)
        # provenance only (0 when absent, as in a hand-built graph); checked when present
        levels = exact_int(ours.get("levels", 0), f"metadata {NAMESPACE}.levels", 0, LEVELS_MAX)
        phi = finite_float(ours.get("phi", 0.0), f"metadata {NAMESPACE}.phi", 0.0, 1.0)
        names: tuple[str, ...] = ()
        if "class_names" in ours:
            parsed = strict_json(ours["class_names"], f"metadata {NAMESPACE}.class_names")
            if not isinstance(parsed, list) or not all(isinstance(n, str) for n in parsed):
                raise InvalidValueError(f"{NAMESPACE}.class_names must be a JSON list of "
                                        "strings")
            names = tuple(parsed)
        known = {"format", "version", "neuron", "input", "readout", "input_normalization",
                 "steps", "levels", "phi", "class_names"}
        extra = {k: v for k, v in ours.items() if k not in known}
        check_recorded_metadata(extra, f"metadata {NAMESPACE}")
    return GraphSemantics(steps=steps, mean=mean, std=std, levels=levels, phi=phi,
                          class_names=names, extra=extra)


def neuron_semantics(name: str, node) -> NeuronSemantics:
    """Dynamics of the ``IF`` node ``name`` from its parameters and ``qcfs_lava`` metadata.

    Raises:
        NirError: metadata missing or ill-typed, a reset/fire rule other than ours, ``r != 1``
            or a threshold that differs between neurons.
    """
    from qcfs_lava.validate import InvalidValueError, finite_float

    meta = (getattr(node, "metadata", None) or {}).get(NAMESPACE)
    if not isinstance(meta, dict):
        raise NirError(f"IF node {name!r} has no '{NAMESPACE}' metadata (reset, fire rule, "
                       "initial potential); it was not written by qcfs-lava")
    if _scalar(meta.get("reset")) != "subtract" or _scalar(meta.get("fire")) != "ge":
        raise NirError(f"IF node {name!r}: reset {meta.get('reset')!r}, fire "
                       f"{meta.get('fire')!r}; this runner needs 'subtract' and 'ge'")
    try:
        r = np.asarray(node.r, dtype=np.float64)
        th = np.asarray(node.v_threshold, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise NirError(f"IF node {name!r}: r and v_threshold must be numbers ({exc})") from None
    if not np.all(r == 1.0):
        raise NirError(f"IF node {name!r}: r must be 1 everywhere (qcfs-lava writes r = 1)")
    if th.size == 0 or not np.all(th == th.reshape(-1)[0]):
        raise NirError(f"IF node {name!r}: v_threshold must be one value for the whole node")
    if "v_init" not in meta:
        raise NirError(f"IF node {name!r}: metadata {NAMESPACE}.v_init (the initial potential) "
                       "is missing; the file is damaged: export it again")
    try:
        v_init = finite_float(_scalar(meta["v_init"]), f"IF node {name!r} v_init")
        amplitude = finite_float(_scalar(meta.get("spike_amplitude", 1.0)),
                                 f"IF node {name!r} spike_amplitude")
    except InvalidValueError as exc:
        raise NirError(f"{exc}; the file is damaged: export it again") from None
    if amplitude <= 0:
        raise NirError(f"IF node {name!r}: spike_amplitude must be positive, got {amplitude}")
    return NeuronSemantics(float(th.reshape(-1)[0]), v_init, amplitude)


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
    import warnings

    try:
        # nir computes node shapes while it reads; absurd parameters (a stride of 0) make
        # numpy warn there: our own checks (check_graph) report them as errors instead
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
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
