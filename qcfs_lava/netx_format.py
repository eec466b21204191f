"""The NetX vocabulary of qcfs-lava's files, and the checked reading of one open file.

With :mod:`qcfs_lava.netx` (which writes files and opens them safely), this is the only
module that knows NetX key names; ``docs/netx-format.md`` describes the layout.
:class:`FileReader` reads an HDF5 file that :func:`qcfs_lava.netx.read_netx` has already
opened after checking its digest: every stored value is checked for its exact type and range
(:mod:`qcfs_lava.validate`), nothing is coerced, and every problem is a
:class:`~qcfs_lava.errors.NetxFormatError` naming the file.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from qcfs_lava import __version__
from qcfs_lava import hardware as hw
from qcfs_lava.errors import NetxFormatError
from qcfs_lava.network import (
    FORMAT_VERSION,
    GEOMETRY_FIELDS,
    INPUT,
    IntegerNetwork,
    NeuronLayer,
    Synapse,
    SynapseGeometry,
)
from qcfs_lava.validate import (
    INDEX_MAX,
    LEVELS_MAX,
    check_recorded_metadata,
    exact_bool,
    exact_int,
    exact_int_array,
    exact_int_vector,
    finite_float,
    strict_json,
)

# NetX vocabulary (lava/lib/dl/netx/hdf5.py: Network._create).
LAYER = "layer"
TYPE_INPUT = "input"
TYPE_DENSE = "dense"
TYPE_CONV = "conv"
TYPE_FLATTEN = "flatten"
# lava-dl 0.6.0 raises NotImplementedError for "concat": a multi-input node it cannot build.
MERGE_TYPE = "concat"

# Our neuron, described in each layer's ``neuron`` group.
NEURON_TYPE = "QCFS_IF"
RESET_MODE = "subtract"
FIRE_MODE = "ge"

# Our extension group, ignored by lava-dl's reader.
EXTENSION = "qcfs"
WRITER = "qcfs-lava"



def neuron_from_group(group) -> dict[str, Any] | None:
    """Our neuron's parameters from a NetX ``neuron`` group.

    Args:
        group: the group as h5py opens it, or as lava-dl's reader hands it (a
            ``lava.lib.dl.netx.utils.NetDict``).

    Returns:
        ``{"weight_exp", "v_init", "vth_mant", "payload"}`` (``vth_mant`` None for the
        non-spiking output layer; ``payload`` 1 unless the group declares graded spikes), or
        None when the group describes another neuron type.
    """
    g = getattr(group, "f", group)

    def value(key: str):
        v = g[key][()]
        if isinstance(v, np.ndarray):
            v = v.reshape(-1)[0]
        return v.decode("ascii") if isinstance(v, bytes) else v

    if value("type") != NEURON_TYPE:
        return None
    spiking = bool(int(value("spiking")))
    return {
        "weight_exp": int(value("weightExp")),
        "v_init": int(value("vInit")),
        "vth_mant": int(value("vThMant")) if spiking else None,
        "payload": int(value("payloadMax")) if "payloadMax" in g else 1,
    }


# --------------------------------------------------------------------------- reading


#: Smallest stored value of each geometry field (every other field is at least 1).
_GEOMETRY_MIN = {"padding": 0}


class FileReader:
    """Reads one open file; every problem is a NetxFormatError naming the file."""

    def __init__(self, f, path: Path, digest: bool = False) -> None:
        self.f = f
        self.path = path
        self.digest = digest  # the file's digest header was verified

    def fail(self, problem: str, fix: str = "export the network again with qcfs-lava") -> None:
        raise NetxFormatError(f"{self.path}: {problem}; {fix}")

    def get(self, group, key: str):
        if key not in group:
            self.fail(f"missing '{group.name.rstrip('/')}/{key}' (incomplete or damaged file)")
        return group[key]

    def attr(self, group, key: str):
        if key not in group.attrs:
            self.fail(f"missing attribute '{key}' of '{group.name}' (incomplete or damaged file)")
        return group.attrs[key]

    def value(self, group, key: str):
        return self.get(group, key)[()]

    def text(self, group, key: str) -> str:
        v = self.value(group, key)
        if isinstance(v, np.ndarray):
            if v.size != 1:
                self.fail(f"'{group.name}/{key}' should be one string, has shape {v.shape}")
            v = v.reshape(-1)[0]
        if not isinstance(v, (bytes, str)):
            self.fail(f"'{group.name}/{key}' should be a string, got {type(v).__name__}")
        return v.decode("ascii") if isinstance(v, bytes) else str(v)

    def ints(self, group, key: str, lo: int = 1, hi: int = INDEX_MAX,
             length: int | tuple[int, ...] | None = None) -> tuple[int, ...]:
        return exact_int_vector(self.value(group, key), f"'{group.name}/{key}'", lo, hi, length)

    def int(self, group, key: str, lo: int | None = None, hi: int | None = None) -> int:
        return exact_int(self.value(group, key), f"'{group.name}/{key}'", lo, hi)

    def attr_int(self, group, key: str, lo: int | None = None, hi: int | None = None) -> int:
        return exact_int(self.attr(group, key), f"attribute '{key}' of '{group.name}'", lo, hi)

    def attr_str(self, group, key: str) -> str:
        v = self.attr(group, key)
        if not isinstance(v, str):
            self.fail(f"attribute '{key}' of '{group.name}' should be a string, got "
                      f"{type(v).__name__}")
        return v

    def synapse(self, group, source: int, kind: str) -> Synapse:
        weight = exact_int_array(self.value(group, "weight"), f"'{group.name}/weight'",
                                 hw.WEIGHT_MIN, hw.WEIGHT_MAX)
        if kind == "dense":
            return Synapse(source=source, kind=kind, weight=weight)
        geometry: dict[str, Any] = {}
        for f in fields(SynapseGeometry):
            if f.name not in GEOMETRY_FIELDS:
                continue
            lo = _GEOMETRY_MIN.get(f.name, 1)
            if isinstance(f.default, tuple):
                geometry[f.name] = self.ints(group, f.name, lo, INDEX_MAX, len(f.default))
            else:
                geometry[f.name] = self.int(group, f.name, lo, INDEX_MAX)
        return Synapse(source=source, kind=kind, weight=weight, **geometry)

    def header(self) -> tuple[int, dict[str, Any]]:
        f = self.f
        if EXTENSION not in f:
            if LAYER in f:
                self.fail(
                    f"a NetX file without qcfs-lava's extension group '{EXTENSION}/' (e.g. "
                    "one exported by lava-dl's slayer); qcfs-lava reads only the files it "
                    "writes",
                    "load it with lava.lib.dl.netx.hdf5.Network, or export the checkpoint "
                    "with `qcfs-lava export`",
                )
            self.fail(
                "an HDF5 file that is not a NetX network (no 'layer' group)",
                "pass a .net file written by `qcfs-lava export`",
            )
        ext = f[EXTENSION]
        version = self.attr_int(ext, "format_version")
        if version > FORMAT_VERSION:
            self.fail(
                f"written in NetX extension format {version}, newer than this qcfs-lava "
                f"({__version__}) reads (up to {FORMAT_VERSION})",
                "upgrade qcfs-lava",
            )
        if version < 1:
            self.fail(f"invalid format_version {version}")
        if version >= 2 and not self.digest:
            self.fail(
                f"a format-{version} file whose digest header (the first 512 bytes) is missing "
                "or damaged"
            )
        meta = self.get(ext, "metadata")
        metadata = strict_json(self.attr(meta, "metadata"), "attribute 'metadata'")
        if not isinstance(metadata, dict):
            self.fail(f"metadata should be a JSON object, got {type(metadata).__name__}")
        check_recorded_metadata(metadata, "metadata")
        return version, {
            "levels": self.attr_int(meta, "levels", 1, LEVELS_MAX),
            "phi": finite_float(self.attr(meta, "phi"), "attribute 'phi'", 0.0, 1.0),
            "package_version": self.attr_str(meta, "package_version"),
            "metadata": metadata,
            "checksum": self.attr_str(ext, "checksum"),
        }

    def neuron(self, group, where: str) -> dict[str, Any]:
        n = self.get(group, "neuron")
        kind = self.text(n, "type")
        if kind != NEURON_TYPE:
            self.fail(
                f"{where} has a '{kind}' neuron, not qcfs-lava's '{NEURON_TYPE}'",
                "this file was not written by qcfs-lava; export the network again",
            )
        if self.int(n, "biasExp") != hw.BIAS_EXP:
            self.fail(f"{where}: biasExp {self.int(n, 'biasExp')} is not {hw.BIAS_EXP}")
        for key, want in (("reset", RESET_MODE), ("fire", FIRE_MODE)):
            if self.text(n, key) != want:
                self.fail(f"{where}: neuron {key} '{self.text(n, key)}' is not '{want}'")
        spiking = bool(self.int(n, "spiking", 0, 1))
        payload = 1
        graded_keys = [key for key in ("messageBits", "payloadMax") if key in n]
        if graded_keys:
            if len(graded_keys) != 2 or not spiking:
                self.fail(f"{where}: a graded neuron declares both messageBits and payloadMax "
                          f"and spikes; found {graded_keys}, spiking={int(spiking)}")
            payload = self.int(n, "payloadMax", 2, hw.PAYLOAD_MAX)
            bits = self.int(n, "messageBits", 1, hw.GRADED_PAYLOAD_BITS)
            if bits != hw.message_bits(payload):
                self.fail(f"{where}: messageBits {bits} does not match payloadMax {payload} "
                          f"(needs {hw.message_bits(payload)})")
        return {
            "weight_exp": self.int(n, "weightExp", hw.WEIGHT_EXP_MIN, hw.WEIGHT_EXP_MAX),
            "v_init": self.int(n, "vInit", hw.STATE_MIN, hw.STATE_MAX),
            "vth_mant": self.int(n, "vThMant", 1, hw.VTH_MANT_MAX) if spiking else None,
            "payload": payload,
        }

    def network(self) -> tuple[IntegerNetwork, dict[str, Any]]:
        """The network and the header (checksum, package_version...)."""
        version, head = self.header()
        netx = self.get(self.f, LAYER)
        ext_layers = self.get(self.f[EXTENSION], "layers")
        first = self.get(netx, "0")
        if self.text(first, "type") != TYPE_INPUT:
            self.fail("'layer/0' is not the input layer")
        input_shape = self.ints(first, "shape", length=(1, 3))
        n_layers = len(ext_layers)
        layers = []
        for i in range(n_layers):
            e = self.get(ext_layers, str(i))
            name = self.attr_str(e, "name")
            k = self.attr_int(e, "netx_index", 1, len(netx) - 1)
            g = self.get(netx, str(k))
            where = f"layer {i} ({name!r}, 'layer/{k}')"
            kind = self.text(g, "type")
            if exact_bool(self.attr(e, "native"), f"attribute 'native' of '{e.name}'"):
                if kind not in (TYPE_DENSE, TYPE_CONV):
                    self.fail(f"{where} has NetX type '{kind}', expected dense or conv")
                synapses = [self.synapse(g, INPUT if i == 0 else i - 1, kind)]
            else:
                if kind != MERGE_TYPE:
                    self.fail(f"{where} has NetX type '{kind}', expected '{MERGE_TYPE}'")
                syn_group = self.get(e, "synapses")
                synapses = []
                for j in range(len(syn_group)):
                    s = self.get(syn_group, str(j))
                    synapses.append(
                        self.synapse(s, self.attr_int(s, "source", INPUT, i - 1),
                                     self.attr_str(s, "kind"))
                    )
            bias = exact_int_array(self.value(g, "bias"), f"'{g.name}/bias'",
                                   hw.BIAS_MANT_MIN, hw.BIAS_MANT_MAX)
            if bias.ndim == 3:
                bias = bias.transpose(2, 1, 0)
            layers.append(
                NeuronLayer(
                    name=name,
                    shape=self.ints(g, "shape", length=(1, 3)),
                    synapses=tuple(synapses),
                    bias_mant=bias,
                    **self.neuron(g, where),
                )
            )
        net = IntegerNetwork(
            input_shape=input_shape,
            layers=tuple(layers),
            levels=head["levels"],
            phi=head["phi"],
            metadata=head["metadata"],
            format_version=version,
        )
        return net, head
