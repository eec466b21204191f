"""Fuzzing the readers: seeded random damage of NetX, NIR and npz files and checkpoints.

Every damaged file must end in the reader's typed error or read back identical to what was
written: never a traceback, never a silently different network, never a crash. The cases are
seeded (reproducible) and bounded to a few hundred; ``benchmarks/bench_fuzz.py`` runs
thousands with the same generators.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from netfuzz import (
    ERROR,
    IDENTICAL,
    checkpoint_outcome,
    craft_hdf5,
    craft_netx_metadata,
    craft_nir,
    craft_npz,
    damaged_copies,
    netx_outcome,
    nir_outcome,
    npz_outcome,
    npz_sample,
)
from netgen import random_network

from qcfs_lava.checkpoint import Checkpoint, save_checkpoint
from qcfs_lava.model.zoo import build_model
from qcfs_lava.netx import read_netx, write_netx
from qcfs_lava.safe_hdf5 import write_digest_header

OK = {ERROR, IDENTICAL}
FORMAT1 = Path(__file__).resolve().parents[1] / "data" / "digits-cnn-format1.net"


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    """A small residual conv network (merge layers included) and its NetX file."""
    net = random_network(np.random.default_rng(7), conv=True, residual=True)
    path = tmp_path_factory.mktemp("fuzz") / "small.net"
    write_netx(net, path)
    return net, path


def _run(cases, outcome) -> Counter:
    counts: Counter = Counter()
    bad = []
    for label, check in cases:
        result = outcome(check)
        counts[result if result in OK else "other"] += 1
        if result not in OK:
            bad.append(f"{label}: {result}")
    assert not bad, "\n".join(bad[:10])
    return counts


def test_byte_damage_of_a_net_file(small_net, tmp_path):
    net, path = small_net
    data = path.read_bytes()
    rng = np.random.default_rng(2024)
    cases = damaged_copies(data, rng, 300, tmp_path, "c{}.net", "case")
    counts = _run(cases, lambda p: netx_outcome(p, net))
    assert counts[ERROR] > 250  # the digest refuses nearly every change


def test_damage_of_the_digest_header_itself(small_net, tmp_path):
    """Bytes 0..511 hold the digest: damage there is refused (or is padding, so harmless)."""
    net, path = small_net
    data = path.read_bytes()
    rng = np.random.default_rng(11)

    def cases():
        for i in range(12):
            damaged = bytearray(data)
            damaged[int(rng.integers(0, 120))] ^= int(rng.integers(1, 256))
            case = tmp_path / f"h{i}.net"
            case.write_bytes(bytes(damaged))
            yield f"header case {i}", case

    _run(cases(), lambda p: netx_outcome(p, net))


def test_crafted_values_with_a_valid_digest(small_net, tmp_path):
    """Well-formed HDF5 with wrong dtypes, NaN/inf, out-of-range or mis-shaped values and a
    digest stamped over them: only the reader's own checks stand in the way."""
    net, path = small_net
    rng = np.random.default_rng(5)
    changes = []

    def cases():
        for i in range(120):
            case = tmp_path / f"k{i}.net"
            case.write_bytes(path.read_bytes())
            changes.append(craft_hdf5(case, rng))
            write_digest_header(case)
            yield f"crafted {i} ({changes[-1]})", case

    counts = _run(cases(), lambda p: netx_outcome(p, net))
    assert counts[ERROR] > 80


@pytest.mark.slow
def test_byte_damage_of_a_format1_file():
    """Files without a digest are parsed in a child process first (a crash only kills it)."""
    ref = read_netx(FORMAT1)
    data = FORMAT1.read_bytes()
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as tmp:
        cases = damaged_copies(data, rng, 15, Path(tmp), "o{}.net", "format-1 case")
        _run(cases, lambda p: netx_outcome(p, ref))


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    kwargs = dict(in_channels=1, num_classes=10, input_size=8, levels=4, phi=0.5, width=4)
    model = build_model("cnn", **kwargs)
    path = tmp_path_factory.mktemp("ckfuzz") / "small.pt"
    ckpt = Checkpoint(model="cnn", model_kwargs=kwargs, state_dict=model.state_dict(), levels=4,
                      phi=0.5, activation="qcfs", dataset="digits", input_shape=(1, 8, 8),
                      num_classes=10, class_names=[str(i) for i in range(10)], mean=[0.3],
                      std=[0.4])
    save_checkpoint(ckpt, path)
    return ckpt.to_dict(), path


def test_byte_damage_of_a_checkpoint(small_checkpoint, tmp_path):
    reference, path = small_checkpoint
    data = path.read_bytes()
    rng = np.random.default_rng(99)
    cases = damaged_copies(data, rng, 150, tmp_path, "c{}.pt", "checkpoint case")
    counts = _run(cases, lambda p: checkpoint_outcome(p, reference))
    assert counts[ERROR] > 100


# --------------------------------------------------------------------------- npz datasets


@pytest.mark.parametrize("compressed", [False, True])
def test_byte_damage_of_an_npz_dataset(tmp_path, compressed):
    from qcfs_lava.data import load_npz

    path = npz_sample(tmp_path / "ds.npz", compressed)
    reference = load_npz(path)
    data = path.read_bytes()
    rng = np.random.default_rng(17 + compressed)
    cases = damaged_copies(data, rng, 120, tmp_path, "n{}.npz", "npz case")
    counts = _run(cases, lambda p: npz_outcome(p, reference))
    assert counts[ERROR] > 60


def test_crafted_npz_members(tmp_path):
    """Well-formed archives whose .npy members lie (shapes, dtypes, labels)."""
    path = npz_sample(tmp_path / "ds.npz", False)
    with np.load(path) as f:
        x, y = f["x"], f["y"]
    rng = np.random.default_rng(23)

    def cases():
        for i in range(150):
            label, data = craft_npz(rng, x, y)
            case = tmp_path / f"k{i}.npz"
            case.write_bytes(data)
            yield f"crafted npz {i} ({label})", case

    counts = _run(cases(), lambda p: npz_outcome(p, None))
    assert counts[ERROR] == 150


# --------------------------------------------------------------------------- NIR files


@pytest.fixture(scope="module")
def nir_file(tmp_path_factory):
    pytest.importorskip("nir", reason="the NIR fuzz cases need the [nir] extra")
    from qcfs_lava.nir_exchange.export import export_checkpoint
    from qcfs_lava.nir_exchange.semantics import read_nir

    path = tmp_path_factory.mktemp("nirfuzz") / "digits.nir"
    export_checkpoint(Path(__file__).resolve().parents[2] / "netx_exports" / "digits-cnn.pt",
                      path, steps=4)
    return read_nir(path), path


def test_byte_damage_of_a_nir_file(nir_file, tmp_path):
    graph, path = nir_file
    data = path.read_bytes()
    rng = np.random.default_rng(31)
    cases = damaged_copies(data, rng, 80, tmp_path, "r{}.nir", "nir case")
    counts = _run(cases, lambda p: nir_outcome(p, graph))
    assert counts[ERROR] > 60


def test_crafted_nir_metadata_and_nodes(nir_file, tmp_path):
    """A valid file (digest and all) whose metadata, node parameters or wiring are wrong."""
    from qcfs_lava.nir_exchange.semantics import write_nir

    graph, _ = nir_file
    rng = np.random.default_rng(37)

    def cases():
        for i in range(100):
            label, crafted = craft_nir(graph, rng)
            case = tmp_path / f"q{i}.nir"
            write_nir(crafted, case)
            yield f"crafted nir {i} ({label})", case

    counts = _run(cases(), lambda p: nir_outcome(p, graph))
    assert counts[ERROR] == 100


def test_crafted_netx_metadata(tmp_path):
    """NetX files with a consistent checksum whose recorded metadata is ill-typed."""
    net = read_netx(Path(__file__).resolve().parents[2] / "netx_exports" / "digits-cnn.net")
    rng = np.random.default_rng(41)

    def cases():
        for i in range(40):
            label, crafted = craft_netx_metadata(net, rng)
            case = tmp_path / f"m{i}.net"
            write_netx(crafted, case)
            yield f"netx metadata {i} ({label})", case

    counts = _run(cases(), lambda p: netx_outcome(p, net))
    assert counts[ERROR] == 40
