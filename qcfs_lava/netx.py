"""lava-dl NetX HDF5 export and import of the integer network.

This module and :mod:`qcfs_lava.netx_format` (the vocabulary and the reader of one open
file) are the only ones that know NetX key names and axis order. The layout follows what
lava-dl 0.6.0's reader (``lava/lib/dl/netx/hdf5.py``, ``utils.py``, ``blocks/process.py``)
reads; ``docs/netx-format.md`` describes it in full. In short::

    layer/0                  type "input", shape (torch order: C, H, W or N)
    layer/k                  type "dense" | "conv" | "flatten" | "concat"
                             shape        (torch order; the reader reverses it to W, H, C)
                             weight       dense (out, in); conv (C_out, C_in/groups, kH, kW)
                             stride, padding, dilation (H, W), groups     (conv only)
                             bias         our bias_mant: (C,) or the full shape in W, H, C
                             neuron/      type "QCFS_IF", vThMant, vInit, weightExp, biasExp,
                                          reset "subtract", fire "ge", spiking;
                                          graded layers also messageBits, payloadMax
    qcfs/                    extension lava-dl ignores: format_version, checksum
    qcfs/metadata            levels, phi, package_version, metadata (JSON)
    qcfs/layers/i            name, netx_index, native; synapses/j/ for merge layers

A layer whose single synapse comes from the layer just before it is written the way lava-dl
writes it ("native"). A layer with several synapses (a residual add) or with a synapse from
an earlier layer is written with type ``"concat"``, for which lava-dl 0.6.0's ``Network``
raises ``NotImplementedError``: it fails loudly instead of running a wrong, purely sequential
network. Its real synapses live in ``qcfs/layers/i/synapses``.

Every integer the reader returns is covered by a sha256 checksum (:func:`netx_checksum`) that
:func:`read_netx` verifies, so byte-level corruption is reported, never silently run.

Since format version 2 the file also starts with a 512-byte HDF5 user block holding a sha256
of every byte after it (:mod:`qcfs_lava.safe_hdf5`); :func:`read_netx` checks it before the
HDF5 library parses anything, so a damaged file cannot crash the process. Version-1 files
(no digest) are parsed in a child process first. Every stored value is then checked for its
exact type and range (:mod:`qcfs_lava.validate`): nothing is coerced.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from qcfs_lava import __version__
from qcfs_lava import hardware as hw
from qcfs_lava.errors import NetworkValidationError, NetxFormatError
from qcfs_lava.io import atomic_paths, write_bytes, write_file_bytes
from qcfs_lava.network import (
    INPUT,
    IntegerNetwork,
    NeuronLayer,
    Synapse,
    format_table,
)
from qcfs_lava.netx_format import (
    EXTENSION,
    FIRE_MODE,
    LAYER,
    MERGE_TYPE,
    NEURON_TYPE,
    RESET_MODE,
    TYPE_CONV,
    TYPE_DENSE,
    TYPE_FLATTEN,
    TYPE_INPUT,
    WRITER,
    FileReader,
    neuron_from_group,
)
from qcfs_lava.validate import InvalidValueError, strict_json

__all__ = [
    "EXTENSION",
    "NEURON_TYPE",
    "MERGE_TYPE",
    "write_netx",
    "read_netx",
    "describe_netx",
    "netx_checksum",
    "netx_file_digest",
    "read_export_config",
    "netx_layer_types",
    "is_lava_dl_sequential",
    "lava_dl_support",
    "neuron_from_group",
]

# --------------------------------------------------------------------------- layout


def _is_native(net: IntegerNetwork, index: int) -> bool:
    """True when lava-dl's sequential reader wires layer ``index`` correctly."""
    syns = net.layers[index].synapses
    return len(syns) == 1 and syns[0].source == (INPUT if index == 0 else index - 1)


def netx_layer_types(net: IntegerNetwork) -> list[tuple[str, int | None]]:
    """The NetX ``layer/k`` groups :func:`write_netx` writes for ``net``, in order.

    Returns:
        One ``(type, neuron_layer_index)`` pair per NetX group; the index is ``None`` for
        the ``input`` and ``flatten`` groups.
    """
    out: list[tuple[str, int | None]] = [(TYPE_INPUT, None)]
    for i, layer in enumerate(net.layers):
        main = layer.synapses[0]
        if not _is_native(net, i):
            out.append((MERGE_TYPE, i))
            continue
        if main.kind == "dense" and len(net.source_shape(main.source)) == 3:
            out.append((TYPE_FLATTEN, None))
        out.append((TYPE_DENSE if main.kind == "dense" else TYPE_CONV, i))
    return out


def is_lava_dl_sequential(net: IntegerNetwork) -> bool:
    """True when every layer is native, i.e. lava-dl's own reader can wire the whole file."""
    return all(_is_native(net, i) for i in range(len(net.layers)))


def lava_dl_support(net: IntegerNetwork) -> tuple[str, ...]:
    """What stock lava-dl 0.6.0 can and cannot do with ``net``'s file, as ``inspect`` lines."""
    cannot = "stock lava-dl    cannot build it: its reader does not know the QCFS_IF neuron"
    if is_lava_dl_sequential(net):
        return (
            cannot,
            "lava-dl bridge   builds it with lava-dl's own blocks and our neuron: "
            "qcfs_lava.lava_sim.netx_bridge.build_lava_dl_network (docs/lava-dl.md)",
        )
    return (
        f"{cannot}, nor its '{MERGE_TYPE}' (residual) layers (not implemented in lava-dl 0.6.0)",
        "lava-dl bridge   no (residual layers); run it with qcfs_lava.lava_sim.simulate "
        "(qcfs-lava simulate)",
    )


# --------------------------------------------------------------------------- checksum


def _header(net: IntegerNetwork) -> dict[str, Any]:
    return {
        "input_shape": list(net.input_shape),
        "levels": int(net.levels),
        "phi": float(net.phi),
        "format_version": int(net.format_version),
        "metadata": dict(net.metadata),
        "layers": [
            {
                "name": layer.name,
                "shape": list(layer.shape),
                "weight_exp": layer.weight_exp,
                "vth_mant": layer.vth_mant,
                "v_init": layer.v_init,
                # only graded layers: binary files keep their checksums
                **({"payload": layer.payload} if layer.payload != 1 else {}),
                "bias_shape": list(layer.bias_mant.shape),
                "synapses": [
                    {
                        "source": s.source,
                        "kind": s.kind,
                        "weight_shape": list(s.weight.shape),
                        **{k: list(v) if isinstance(v, tuple) else v
                           for k, v in s.geometry().items()},
                    }
                    for s in layer.synapses
                ],
            }
            for layer in net.layers
        ],
    }


def netx_checksum(net: IntegerNetwork) -> str:
    """sha256 (hex) of everything that defines ``net``.

    The canonical bytes are the JSON of the structure and metadata (sorted keys) followed by
    every bias and weight array as little-endian int64, layer by layer, in synapse order.
    """
    h = hashlib.sha256()
    h.update(json.dumps(_header(net), sort_keys=True, allow_nan=False).encode("utf-8"))
    for layer in net.layers:
        h.update(np.ascontiguousarray(layer.bias_mant, dtype="<i8").tobytes())
        for syn in layer.synapses:
            h.update(np.ascontiguousarray(syn.weight, dtype="<i8").tobytes())
    return h.hexdigest()


def _metadata_json(net: IntegerNetwork) -> str:
    try:
        text = json.dumps(dict(net.metadata), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NetxFormatError(
            f"network metadata cannot be stored as JSON ({exc}); keep it to str keys and "
            "str / int / float / bool / None / list / dict values"
        ) from exc
    if json.loads(text) != dict(net.metadata):
        bad = [k for k, v in net.metadata.items() if json.loads(json.dumps(v)) != v]
        raise NetxFormatError(
            f"network metadata {bad or list(net.metadata)} would not read back unchanged "
            "from JSON (tuples become lists, int keys become str); store lists and str keys"
        )
    return text


# --------------------------------------------------------------------------- writing


def _str_dataset(group, key: str, value: str, vector: bool = False) -> None:
    """A fixed-length ASCII string, as slayer writes it (``vector``: shape ``(1,)``)."""
    data = np.bytes_(value.encode("ascii"))
    if vector:
        group.create_dataset(key, (1,), f"S{max(len(value), 1)}", [data])
    else:
        group.create_dataset(key, data=data)


def _write_neuron(group, layer: NeuronLayer) -> None:
    g = group.create_group("neuron")
    _str_dataset(g, "type", NEURON_TYPE)
    if layer.spiking:
        g.create_dataset("vThMant", data=np.int64(layer.vth_mant))
    g.create_dataset("vInit", data=np.int64(layer.v_init))
    g.create_dataset("weightExp", data=np.int64(layer.weight_exp))
    g.create_dataset("biasExp", data=np.int64(hw.BIAS_EXP))
    _str_dataset(g, "reset", RESET_MODE)
    _str_dataset(g, "fire", FIRE_MODE)
    g.create_dataset("spiking", data=np.int8(layer.spiking))
    if layer.payload != 1:  # graded spikes: lava-dl's width key, and our exact bound
        g.create_dataset("messageBits", data=np.int64(layer.message_bits))
        g.create_dataset("payloadMax", data=np.int64(layer.payload))


def _write_bias(group, layer: NeuronLayer) -> None:
    b = layer.bias_mant
    if b.ndim == 3:  # full-shape conv bias: lava-dl compares it with the W, H, C block shape
        b = b.transpose(2, 1, 0)
    group.create_dataset("bias", data=b.astype(np.int32))


def _write_geometry(group, syn: Synapse) -> None:
    for key, value in syn.geometry().items():  # GEOMETRY_FIELDS: stride, padding, ...
        group.create_dataset(key, data=np.array(value, dtype=np.int64))


def _write_weight(group, syn: Synapse) -> None:
    group.create_dataset("weight", data=syn.weight.astype(np.int16))


def _write_file(f, net: IntegerNetwork) -> None:
    layers = f.create_group(LAYER)
    ext = f.create_group(EXTENSION)
    ext.attrs["writer"] = WRITER
    ext.attrs["format_version"] = np.int64(net.format_version)
    meta = ext.create_group("metadata")
    meta.attrs["levels"] = np.int64(net.levels)
    meta.attrs["phi"] = np.float64(net.phi)
    meta.attrs["package_version"] = __version__
    meta.attrs["metadata"] = _metadata_json(net)
    ext_layers = ext.create_group("layers")

    for k, (kind, index) in enumerate(netx_layer_types(net)):
        g = layers.create_group(str(k))
        _str_dataset(g, "type", kind, vector=True)
        if kind == TYPE_INPUT:
            g.create_dataset("shape", data=np.array(net.input_shape, dtype=np.int64))
            continue
        if kind == TYPE_FLATTEN:
            nxt = net.layers[netx_layer_types(net)[k + 1][1]]
            n_in = int(np.prod(net.source_shape(nxt.synapses[0].source)))
            g.create_dataset("shape", data=np.array([n_in], dtype=np.int64))
            continue
        layer = net.layers[index]
        g.create_dataset("shape", data=np.array(layer.shape, dtype=np.int64))
        e = ext_layers.create_group(str(index))
        e.attrs["name"] = layer.name
        e.attrs["netx_index"] = np.int64(k)
        e.attrs["native"] = kind != MERGE_TYPE
        if kind == MERGE_TYPE:
            for j, syn in enumerate(layer.synapses):
                s = e.create_group(f"synapses/{j}")
                s.attrs["source"] = np.int64(syn.source)
                s.attrs["kind"] = syn.kind
                _write_weight(s, syn)
                _write_geometry(s, syn)
        else:
            syn = layer.synapses[0]
            _write_weight(g, syn)
            if syn.kind == "conv":
                _write_geometry(g, syn)
        _write_bias(g, layer)
        _write_neuron(g, layer)

    ext.attrs["checksum"] = netx_checksum(net)


def netx_bytes(net: IntegerNetwork) -> tuple[bytes, str]:
    """The NetX file of ``net`` built in memory, with its digest header; and the digest."""
    from qcfs_lava.safe_hdf5 import hdf5_bytes

    return hdf5_bytes(lambda f: _write_file(f, net))


def write_netx(
    net: IntegerNetwork,
    path: str | os.PathLike,
    *,
    overwrite: bool = True,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write ``net`` as a lava-dl NetX HDF5 file, atomically.

    The file is first written to a temporary file in the same folder and then moved into
    place with ``os.replace``: an interrupted export leaves no file and an existing file
    untouched.

    Args:
        net: the integer network.
        path: the ``.net`` file to write (its folder must exist).
        overwrite: replace an existing file; if False an existing file raises.
        config: if given, also write it as ``FILE.net.json`` (the export configuration), with
            ``netx_checksum`` and ``netx_file_sha256`` added. Both files are written before
            either replaces an existing one (:func:`qcfs_lava.io.atomic_paths`), and the
            JSON's digest ties it to this exact ``.net`` (:func:`read_export_config`).

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        NetxFormatError: the metadata cannot be stored (not JSON), or the ranges are not
            Loihi's.
    """
    from qcfs_lava.io import to_jsonable

    path = Path(path)
    if net.ranges != hw.LOIHI_RANGES:
        raise NetxFormatError(f"{path}: NetX holds Loihi's 8-bit weights, not this network's "
                              f"{net.ranges.weight_bits}-bit ones; convert with weight_bits=8")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    _metadata_json(net)  # fail before creating anything
    data, digest = netx_bytes(net)  # built in memory: h5py never writes to the disk
    if config is None:
        write_bytes(path, data)
        return path
    sidecar = export_config_path(path)
    config = dict(config, netx_checksum=netx_checksum(net), netx_file_sha256=digest)
    text = json.dumps(to_jsonable(config), indent=2, allow_nan=False) + "\n"
    # the JSON replaces the old one first: an interrupted pair has a JSON that is detectably
    # newer than its .net, never an old JSON trusted beside a new .net
    with atomic_paths(sidecar, path) as (tmp_json, tmp_net):
        write_file_bytes(tmp_net, data)
        write_file_bytes(tmp_json, text.encode("utf-8"))
    return path


def export_config_path(path: str | os.PathLike) -> Path:
    """``FILE.net`` -> ``FILE.net.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def netx_file_digest(path: str | os.PathLike) -> str | None:
    """The whole-file sha256 stored in a NetX file's digest header (None without one)."""
    from qcfs_lava.safe_hdf5 import DIGEST_MAGIC, USERBLOCK_SIZE

    with open(path, "rb") as f:
        head = f.read(USERBLOCK_SIZE)
    if not head.startswith(DIGEST_MAGIC):
        return None
    for line in head[len(DIGEST_MAGIC):].split(b"\0", 1)[0].decode("ascii", "replace").split():
        if len(line) == 64:
            return line
    return None


def read_export_config(
    path: str | os.PathLike, net: IntegerNetwork | None = None
) -> dict[str, Any]:
    """The export configuration ``FILE.net.json`` written beside ``FILE.net``, checked to
    belong to that exact file.

    Raises:
        NetxFormatError: no JSON, not valid JSON, or a JSON left from another export (its
            digest or checksum differs from the ``.net`` file's).
    """
    path = Path(path)
    sidecar = export_config_path(path)
    if not sidecar.is_file():
        raise NetxFormatError(f"{sidecar}: no such file; export the network again to write it")
    try:
        config = strict_json(sidecar.read_text(encoding="utf-8", errors="replace"), str(sidecar))
    except (InvalidValueError, OSError) as exc:
        raise NetxFormatError(f"{sidecar}: {exc}; export the network again") from exc
    if not isinstance(config, dict):
        raise NetxFormatError(f"{sidecar}: not an export configuration; export again")
    net = read_netx(path) if net is None else net
    digest = netx_file_digest(path)
    stale = (
        config.get("netx_file_sha256") != digest
        if digest is not None
        else config.get("netx_checksum") != netx_checksum(net)
    )
    if stale:
        raise NetxFormatError(
            f"{sidecar} does not belong to {path} (it was written by another export: a "
            "stale or mismatched pair); export the network again to rewrite both"
        )
    return config


def read_netx(path: str | os.PathLike) -> IntegerNetwork:
    """Read a NetX file written by :func:`write_netx`.

    Args:
        path: the ``.net`` file.

    Returns:
        The integer network, equal (``.equals``) to the one written.

    Raises:
        NetxFormatError: the file is missing, not HDF5, truncated or damaged (its checksum
            does not match), lacks a key, is of a newer format, or is a NetX file that
            qcfs-lava did not write. The message names the file, the problem and the fix.
    """
    return _read_netx(path)[0]


def _read_netx(path: str | os.PathLike) -> tuple[IntegerNetwork, dict[str, Any]]:
    """:func:`read_netx`, also returning the file's header (one open of the file)."""
    import h5py

    from qcfs_lava.safe_hdf5 import HDF5GuardError, verify_hdf5

    path = Path(path)
    if not path.is_file():
        raise NetxFormatError(f"{path}: no such file; check the path or run `qcfs-lava export`")
    try:
        check = verify_hdf5(path)  # before h5py parses anything in this process
    except HDF5GuardError as exc:
        fix = ("pass a .net file written by `qcfs-lava export`" if "not an HDF5" in str(exc)
               else "export the network again (or copy the file again)")
        raise NetxFormatError(f"{path}: {exc}; {fix}") from None
    except OSError as exc:
        raise NetxFormatError(f"{path}: cannot be read ({exc}); check the file") from exc
    try:
        with h5py.File(path, "r") as f:
            net, head = FileReader(f, path, digest=check.digest).network()
    except NetxFormatError:
        raise
    except InvalidValueError as exc:
        raise NetxFormatError(
            f"{path}: {exc}; the file is damaged or was not written by qcfs-lava, export the "
            "network again"
        ) from exc
    except NetworkValidationError as exc:
        raise NetxFormatError(
            f"{path}: describes an invalid network ({exc}); the file is damaged, export the "
            "network again"
        ) from exc
    except (OSError, KeyError, ValueError, TypeError, IndexError, UnicodeDecodeError,
            OverflowError, RuntimeError, RecursionError, AttributeError) as exc:
        raise NetxFormatError(
            f"{path}: cannot be read ({type(exc).__name__}: {exc}); the file is truncated or "
            "damaged, export the network again"
        ) from exc
    actual, stored = netx_checksum(net), head["checksum"]
    if actual != stored:
        raise NetxFormatError(
            f"{path}: checksum mismatch (stored {stored[:16]}..., contents {actual[:16]}...); "
            "the file was modified or damaged, export the network again"
        )
    return net, head


def describe_netx(path: str | os.PathLike) -> str:
    """A readable description of a NetX file: header, layer table and metadata."""
    net, head = _read_netx(path)
    package_version = head["package_version"]
    types = [t for t, _ in netx_layer_types(net)]
    lines = [
        f"NetX file        {Path(path)}",
        f"format version   {net.format_version} (written by qcfs-lava {package_version})",
        f"checksum         {netx_checksum(net)} (verified)",
        f"input shape      {'x'.join(str(s) for s in net.input_shape)} (uint8, graded)",
        f"levels, phi      {net.levels}, {net.phi}",
        f"NetX layers      {', '.join(types)}",
        *lava_dl_support(net),
        "",
        format_table(net),
    ]
    if export_config_path(path).is_file():
        try:
            read_export_config(path, net)
            status = "matches this file"
        except NetxFormatError as exc:
            status = f"NOT USABLE: {str(exc).split(': ', 1)[-1]}"
        lines.insert(3, f"export config    {export_config_path(path).name} ({status})")
    if net.metadata:
        lines += ["", "metadata:"]
        for key in sorted(net.metadata):
            lines.append(f"  {key:<18} {json.dumps(net.metadata[key])}")
    return "\n".join(lines)
