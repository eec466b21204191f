"""Seeded damage of NetX, NIR and npz files and checkpoints, and the outcome classes the fuzz
checks use.

Used by ``tests/netx/test_fuzz.py`` (a few hundred cases) and ``benchmarks/bench_fuzz.py`` (many).
Every case must end in one of two outcomes: ``"error"`` (the reader raised its typed error)
or ``"identical"`` (it read back exactly what was written). Anything else is a defect.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

ERROR, IDENTICAL = "error", "identical"


# --------------------------------------------------------------------------- raw bytes


def flip_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """1 to 3 random bytes replaced by different random values."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(out)))
        out[i] ^= int(rng.integers(1, 256))
    return bytes(out)


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def zero_block(data: bytes, rng: np.random.Generator) -> bytes:
    """A run of 8 to 256 bytes set to zero (a lost disk sector, a bad copy)."""
    out = bytearray(data)
    start = int(rng.integers(len(out)))
    n = int(rng.integers(8, 257))
    out[start:start + n] = bytes(len(out[start:start + n]))
    return bytes(out)


BYTE_DAMAGE: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "flip": flip_bytes, "truncate": truncate, "zero_block": zero_block,
}


def damage_bytes(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random kind of byte damage (flips three times as often as the others)."""
    kind = str(rng.choice(["flip", "flip", "flip", "truncate", "zero_block"]))
    return kind, BYTE_DAMAGE[kind](data, rng)


def damaged_copies(data: bytes, rng: np.random.Generator, count: int, folder, file_name: str,
                   label: str):
    """``(description, path)`` of ``count`` randomly damaged copies of ``data``, each written
    to ``folder / file_name.format(i)`` when the consumer asks for it."""
    for i in range(count):
        kind, damaged = damage_bytes(data, rng)
        case = Path(folder) / file_name.format(i)
        case.write_bytes(damaged)
        yield f"{label} {i} ({kind})", case


# --------------------------------------------------------------------------- crafted HDF5


def _wrong_values(value: np.ndarray, rng: np.random.Generator) -> object:
    """A replacement of another type, range or shape for a stored value."""
    if value.dtype.kind not in "iufb":  # a string: another string, a number, or nothing
        text = [np.bytes_(b"CUBA"), np.int64(3), np.float64("nan"), np.zeros((0,), np.int8),
                np.array([b"input", b"dense"])]
        return text[int(rng.integers(len(text)))]
    choices = [
        lambda v: v.astype(np.float64) + 0.5,
        lambda v: v.astype(np.float64),
        lambda v: np.full(v.shape, np.nan),
        lambda v: np.full(v.shape, np.inf),
        lambda v: np.full(v.shape, -np.inf),
        lambda v: v.astype(np.int64).astype(np.uint64) if v.dtype.kind in "iu" else v,
        lambda v: np.full(v.shape, 2**62, dtype=np.int64),
        lambda v: np.full(v.shape, -(2**40), dtype=np.int64),
        lambda v: np.full(v.shape, -1, dtype=np.int64),
        lambda v: np.zeros(v.shape, dtype=np.int64),
        lambda v: np.zeros((), dtype=np.int64) if v.ndim else np.zeros((2,), dtype=np.int64),
        lambda v: np.stack([v, v]) if v.size < 10_000 else v[..., :1],
        lambda v: v.astype(np.bool_) if v.dtype.kind in "iuf" else v,
        lambda v: np.bytes_(b"crafted"),
        lambda v: v.astype(np.int32) if v.dtype.kind in "iu" else v,  # same values
    ]
    return choices[int(rng.integers(len(choices)))](np.asarray(value))


def craft_hdf5(path: Path, rng: np.random.Generator) -> str:
    """Replace one random dataset or attribute of an HDF5 file with a wrong-typed, out-of-range
    or mis-shaped value (or delete it), keeping the file well formed. Returns what changed."""
    with h5py.File(path, "r+") as f:
        targets: list[tuple[str, str | None]] = []

        def collect(name, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                targets.append((name, None))
            targets.extend((name, key) for key in obj.attrs)

        f.visititems(collect)
        name, attr = targets[int(rng.integers(len(targets)))]
        delete = rng.random() < 0.1
        if attr is None:
            value = f[name][()]
            del f[name]
            if not delete:
                f.create_dataset(name, data=_wrong_values(value, rng))
        else:
            obj = f[name]
            value = obj.attrs[attr]
            del obj.attrs[attr]
            if not delete:
                new = (np.float64("nan") if isinstance(value, str) and rng.random() < 0.5
                       else _wrong_values(np.asarray(value), rng)
                       if not isinstance(value, str) else value + "x")
                obj.attrs[attr] = new
    return f"{'deleted' if delete else 'changed'} {name}{'.' + attr if attr else ''}"


# --------------------------------------------------------------------------- outcomes


def netx_outcome(path: Path, reference) -> str:
    """Read ``path`` with :func:`qcfs_lava.netx.read_netx`; ``reference`` is the network that
    was written. Returns ``"error"``, ``"identical"``, ``"different"`` or the name of an
    exception type that escaped (the last two are defects)."""
    from qcfs_lava.errors import NetxFormatError
    from qcfs_lava.netx import read_netx

    try:
        net = read_netx(path)
    except NetxFormatError:
        return ERROR
    except BaseException as exc:  # a fuzz outcome: reported, never hidden
        return f"untyped {type(exc).__name__}: {exc}"[:300]
    return IDENTICAL if net.equals(reference) else "different"


def checkpoint_outcome(path: Path, reference: dict) -> str:
    """Like :func:`netx_outcome` for :func:`qcfs_lava.checkpoint.load_checkpoint`."""
    from qcfs_lava.checkpoint import load_checkpoint
    from qcfs_lava.errors import CheckpointError

    try:
        got = load_checkpoint(path).to_dict()
    except CheckpointError:
        return ERROR
    except BaseException as exc:  # reported as a defect
        return f"untyped {type(exc).__name__}: {exc}"[:300]
    return IDENTICAL if same_checkpoint(got, reference) else "different"


def same_checkpoint(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        if key == "state_dict":
            sa, sb = a[key], b[key]
            if sa.keys() != sb.keys() or not all(
                sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa
            ):
                return False
        elif a[key] != b[key]:
            return False
    return True


# --------------------------------------------------------------------------- npz archives


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def raw_npy(descr: str, shape: tuple[int, ...], payload: bytes) -> bytes:
    """A ``.npy`` file with any header (a declared shape need not match the payload)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue() + payload


def zip_members(path: Path, members: dict[str, bytes], compress: bool = False) -> Path:
    """An ``.npz``-like zip archive holding ``members`` (name -> bytes)."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    return path


def craft_npz(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> tuple[str, bytes]:
    """A well-formed zip whose ``.npy`` members lie: absurd shapes, wrong dtypes, huge or
    negative or wrapping labels, object arrays, stray members."""
    n = len(y)
    cases = [
        ("huge x shape", lambda: {"x.npy": raw_npy("|u1", (1 << int(rng.integers(32, 62)),),
                                                   b""), "y.npy": npy_bytes(y)}),
        ("x shape beyond payload", lambda: {"x.npy": raw_npy(
            "|u1", (n * int(rng.integers(2, 1000)), *x.shape[1:]), x.tobytes()),
            "y.npy": npy_bytes(y)}),
        ("huge label", lambda: {"x.npy": npy_bytes(x), "y.npy": npy_bytes(
            np.where(np.arange(n) == rng.integers(n), int(rng.integers(1 << 16, 1 << 62)),
                     y).astype(np.int64))}),
        ("uint64 label", lambda: {"x.npy": npy_bytes(x), "y.npy": npy_bytes(
            np.where(np.arange(n) == 0, np.uint64(1 << 63) + np.uint64(rng.integers(1000)),
                     y.astype(np.uint64)))}),
        ("negative label", lambda: {"x.npy": npy_bytes(x),
                                    "y.npy": npy_bytes(y - int(rng.integers(1, 5)))}),
        ("one-based", lambda: {"x.npy": npy_bytes(x), "y.npy": npy_bytes(y + 1)}),
        ("float labels", lambda: {"x.npy": npy_bytes(x), "y.npy": npy_bytes(y.astype(float))}),
        ("float images", lambda: {"x.npy": npy_bytes(x.astype(np.float32)),
                                  "y.npy": npy_bytes(y)}),
        ("object labels", lambda: {"x.npy": npy_bytes(x),
                                   "y.npy": raw_npy("|O", (n,), b"\0" * 8 * n)}),
        ("label count", lambda: {"x.npy": npy_bytes(x), "y.npy": npy_bytes(
            y[: int(rng.integers(0, n))])}),
        ("stray member", lambda: {"x.npy": npy_bytes(x), "y.npy": npy_bytes(y),
                                  "notes.txt": b"hello"}),
        ("no y", lambda: {"x.npy": npy_bytes(x)}),
        ("bad header", lambda: {"x.npy": b"\x93NUMPY\x01\x00" + bytes(
            rng.integers(0, 256, 40, dtype=np.uint8)), "y.npy": npy_bytes(y)}),
        ("odd shape", lambda: {"x.npy": npy_bytes(x.reshape(n, -1)[:, :int(rng.integers(1, 9))]),
                               "y.npy": npy_bytes(y)}),
    ]
    label, make = cases[int(rng.integers(len(cases)))]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if rng.random() < 0.5
                         else zipfile.ZIP_STORED) as z:
        for name, blob in make().items():
            z.writestr(name, blob)
    return label, buffer.getvalue()


def npz_outcome(path: Path, reference) -> str:
    """Read ``path`` with :func:`qcfs_lava.data.load_npz`; ``reference`` is the split of the
    intact file (or None when no read can be identical)."""
    from qcfs_lava.data import load_npz
    from qcfs_lava.errors import DatasetError

    try:
        split = load_npz(path)
    except DatasetError:
        return ERROR
    except BaseException as exc:  # reported as a defect
        return f"untyped {type(exc).__name__}: {exc}"[:300]
    if reference is None:
        return "different"
    same = all(np.array_equal(getattr(split, k), getattr(reference, k))
               for k in ("x_train", "y_train", "x_test", "y_test", "mean", "std"))
    return IDENTICAL if same and split.class_names == reference.class_names else "different"


# --------------------------------------------------------------------------- NIR files


def nir_outcome(path: Path, reference) -> str:
    """Read and check ``path`` as the runners do (:func:`read_nir`, the graph and neuron
    semantics, the reference executor's plan); ``reference`` is the graph written."""
    from qcfs_lava.errors import NirError
    from qcfs_lava.nir_exchange.executor import check_graph
    from qcfs_lava.nir_exchange.semantics import graph_semantics, read_nir

    try:
        graph = read_nir(path)
        graph_semantics(graph, str(path))
        check_graph(graph, str(path))
    except NirError:
        return ERROR
    except BaseException as exc:  # reported as a defect
        return f"untyped {type(exc).__name__}: {exc}"[:300]
    return IDENTICAL if same_graph(graph, reference) else "different"


def same_graph(a, b) -> bool:
    """Equal nodes (types, every array and metadata) and edges."""
    if set(a.nodes) != set(b.nodes) or sorted(map(tuple, a.edges)) != sorted(
            map(tuple, b.edges)):
        return False

    def same(u, v) -> bool:
        if isinstance(u, dict) and isinstance(v, dict):
            return u.keys() == v.keys() and all(same(u[k], v[k]) for k in u)
        if isinstance(u, (np.ndarray, np.generic)) or isinstance(v, (np.ndarray, np.generic)):
            ua, va = np.asarray(u), np.asarray(v)
            return ua.dtype == va.dtype and ua.shape == va.shape and np.array_equal(
                ua, va, equal_nan=ua.dtype.kind == "f")
        return u == v

    for name in a.nodes:
        u, v = a.nodes[name], b.nodes[name]
        if type(u) is not type(v) or not same(u.to_dict(), v.to_dict()):
            return False
    return same(a.metadata or {}, b.metadata or {})


def npz_sample(path: Path, compressed: bool) -> Path:
    """A small, valid ``.npz`` dataset (the first 60 digits) for the damage corpora."""
    from qcfs_lava.data import load_dataset

    split = load_dataset("digits")
    x, y = split.x_test[:60], split.y_test[:60]
    save = np.savez_compressed if compressed else np.savez
    save(path, x=x, y=y, class_names=np.array(split.class_names))
    return path


_BAD_GRAPH_META = {
    "version": ["1", float("nan"), 1.5, 0, 99, True],
    "steps": ["4", 2.7, float("nan"), 0, -3, 10**9, 1 << 40, np.array([4])],
    "levels": ["abc", float("nan"), 2.5, -1, 1 << 40],
    "phi": [float("nan"), "0.5", 5.0, -0.5, float("inf")],
    "class_names": ["not json", "[1, 2]", "NaN", 7, "{\"a\": 1}"],
    "dataset": [123, 4.5, ""],
    "model": [7, ""],
    "neuron": ["if-reset-gt", 3],
    "format": ["other", 1],
}
_BAD_NORM = {"mean": [["a"], [float("nan")], [], "0.1"],
             "std": [[float("nan")], [0.0], [-1.0], [1.0, 2.0], [float("inf")]]}
_BAD_IF = {"v_init": [None, "0.5", float("nan"), float("inf")],
           "spike_amplitude": [float("inf"), -1.0, "x", float("nan")],
           "reset": ["zero"], "fire": ["gt"]}


def craft_nir(graph, rng: np.random.Generator):
    """A copy of ``graph`` with one metadata value, node parameter or edge made wrong (each
    one a value the format refuses). Returns ``(label, graph)``."""
    import copy

    import nir

    from qcfs_lava.nir_exchange.semantics import NAMESPACE

    g = copy.deepcopy(graph)
    meta = g.metadata[NAMESPACE]
    pick = int(rng.integers(6))
    if pick == 0:
        key = sorted(_BAD_GRAPH_META)[int(rng.integers(len(_BAD_GRAPH_META)))]
        value = _BAD_GRAPH_META[key][int(rng.integers(len(_BAD_GRAPH_META[key])))]
        if rng.random() < 0.15 and key in ("version", "neuron", "format"):  # required keys
            del meta[key]
            return f"deleted {key}", g
        meta[key] = value
        return f"{key} = {value!r}", g
    if pick == 1:
        key = sorted(_BAD_NORM)[int(rng.integers(2))]
        value = _BAD_NORM[key][int(rng.integers(len(_BAD_NORM[key])))]
        meta["input_normalization"][key] = value
        return f"input_normalization.{key} = {value!r}", g
    ifs = [n for n, node in g.nodes.items() if isinstance(node, nir.IF)]
    if pick == 2:
        name = ifs[int(rng.integers(len(ifs)))]
        key = sorted(_BAD_IF)[int(rng.integers(len(_BAD_IF)))]
        value = _BAD_IF[key][int(rng.integers(len(_BAD_IF[key])))]
        if value is None:
            del g.nodes[name].metadata[NAMESPACE][key]
        else:
            g.nodes[name].metadata[NAMESPACE][key] = value
        return f"{name}.{key} = {value!r}", g
    weighted = [n for n, node in g.nodes.items() if isinstance(node, (nir.Affine, nir.Conv2d))]
    name = weighted[int(rng.integers(len(weighted)))]
    node = g.nodes[name]
    if pick == 3:
        how = int(rng.integers(4))
        if how == 0:
            node.weight = node.weight.copy()
            node.weight.reshape(-1)[int(rng.integers(node.weight.size))] = [
                np.nan, np.inf, -np.inf][int(rng.integers(3))]
            return f"{name} non-finite weight", g
        if how == 1:
            node.bias = np.concatenate([node.bias, node.bias[:1]])
            return f"{name} bias one too long", g
        if how == 2:
            node.weight = np.full(node.weight.shape, 1e308)
            return f"{name} weights 1e308", g
        node.weight = node.weight[..., :-1] if node.weight.shape[-1] > 1 else node.weight.T
        return f"{name} weight of the wrong shape", g
    if pick == 4:
        conv = [n for n in weighted if isinstance(g.nodes[n], nir.Conv2d)]
        node = g.nodes[conv[int(rng.integers(len(conv)))]]
        field, value = [("groups", 0), ("groups", 3), ("groups", -1), ("stride", np.array([0, 1])),
                        ("dilation", np.array([0, 0])), ("padding", np.array([-1, 0]))][
            int(rng.integers(6))]
        setattr(node, field, value)
        return f"conv {field} = {value!r}", g
    how = int(rng.integers(3))
    edges = list(g.edges)
    if how == 0:
        g.edges.remove(edges[int(rng.integers(len(edges)))])
        return "an edge removed", g
    if how == 1:
        g.nodes["extra"] = nir.Affine(weight=node.weight.copy(), bias=node.bias.copy()) \
            if isinstance(node, nir.Affine) else nir.Flatten(input_type={"input": np.array([4])})
        return "an unconnected node", g
    a, b = edges[int(rng.integers(len(edges)))]
    g.edges.append((b, a))
    return "a cycle", g


_BAD_NETX_META = {
    "steps": ["abc", 2.5, 0, 10**9, -1, None, [4]],
    "dataset": [123, ["digits"], "", None, 4.5],
    "model": [None, 5, ""],
    "class_names": ["0123", [1, 2], {"a": 1}],
    "layer_copies": [0, 65, "2"],
    "checkpoint_sha256": [5, None],
}


def craft_netx_metadata(net, rng: np.random.Generator):
    """``net`` with one recorded metadata value of the wrong type or range (a valid file
    otherwise: its checksum and digest match). Returns ``(label, network)``."""
    import dataclasses

    key = sorted(_BAD_NETX_META)[int(rng.integers(len(_BAD_NETX_META)))]
    value = _BAD_NETX_META[key][int(rng.integers(len(_BAD_NETX_META[key])))]
    return f"metadata {key} = {value!r}", dataclasses.replace(
        net, metadata=dict(net.metadata, **{key: value}))
