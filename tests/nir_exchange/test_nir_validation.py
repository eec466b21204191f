"""NIR and NetX metadata are typed and range-checked; runners accept the same graphs.

Every value is checked with the NetX reader's rules (:mod:`qcfs_lava.validate`): a string or
NaN where a number belongs, steps 2.7, a missing ``v_init``, a bias of the wrong length, Conv
groups that do not divide the channels, NaN weights are typed errors naming the value; a
recorded T is at most ``STEPS_MAX``; the snntorch and sinabs shims refuse what the reference
executor refuses (an extra unconnected node used to make them spin).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qcfs_lava.errors import NetxFormatError, NirError
from qcfs_lava.netx import read_netx, write_netx
from qcfs_lava.validate import STEPS_MAX

nir = pytest.importorskip("nir", reason="the NIR tests need the [nir] extra")

from qcfs_lava.nir_exchange.executor import check_graph, run_nir  # noqa: E402
from qcfs_lava.nir_exchange.semantics import NAMESPACE, read_nir, write_nir  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"
EXAMPLE_CKPT = ROOT / "netx_exports" / "digits-cnn.pt"
X = np.zeros((2, 1, 8, 8), dtype=np.uint8)


@pytest.fixture(scope="module")
def nir_path(tmp_path_factory) -> Path:
    from qcfs_lava.nir_exchange.export import export_checkpoint

    path = tmp_path_factory.mktemp("nir") / "digits.nir"
    export_checkpoint(EXAMPLE_CKPT, path, steps=4)
    return path


@pytest.fixture()
def graph(nir_path):
    return read_nir(nir_path)


def _first(graph, kind):
    return next(name for name, node in graph.nodes.items() if isinstance(node, kind))


# --------------------------------------------------------------------------- 13: metadata

BAD_GRAPH_METADATA = [
    ("version", "1"), ("version", float("nan")), ("version", 1.0), ("steps", "4"),
    ("steps", 2.7), ("steps", float("nan")), ("steps", 0), ("steps", True), ("levels", "abc"),
    ("steps", np.array([4])), ("version", [1]),
    ("levels", float("nan")), ("levels", 2.5), ("phi", float("nan")), ("phi", "0.5"),
    ("phi", 5.0), ("class_names", "not json"), ("class_names", "[1, 2]"),
    ("class_names", 7), ("class_names", "NaN"), ("dataset", 123), ("model", 4.5),
]


@pytest.mark.parametrize(("key", "value"), BAD_GRAPH_METADATA)
def test_ill_typed_graph_metadata_is_a_typed_error(graph, key, value):
    graph.metadata[NAMESPACE][key] = value
    with pytest.raises(NirError, match=key):
        run_nir(graph, X)


@pytest.mark.parametrize(("key", "value"), [
    ("mean", ["a"]), ("mean", [float("nan")]), ("std", [float("nan")]), ("std", [0.0]),
    ("std", [-1.0]), ("mean", []), ("std", [1.0, 2.0]), ("mean", "0.1"),
])
def test_ill_typed_input_normalization_is_a_typed_error(graph, key, value):
    graph.metadata[NAMESPACE]["input_normalization"][key] = value
    with pytest.raises(NirError, match="input_normalization|std|mean"):
        run_nir(graph, X)


@pytest.mark.parametrize(("key", "value"), [
    ("v_init", None), ("v_init", "0.5"), ("v_init", float("nan")),
    ("spike_amplitude", float("inf")), ("spike_amplitude", -1.0), ("spike_amplitude", "x"),
])
def test_ill_typed_neuron_metadata_is_a_typed_error(graph, key, value):
    node = graph.nodes[_first(graph, nir.IF)]
    if value is None:
        del node.metadata[NAMESPACE][key]
    else:
        node.metadata[NAMESPACE][key] = value
    with pytest.raises(NirError, match=key):
        run_nir(graph, X)


def _bad_affine_bias(graph):
    node = graph.nodes[_first(graph, nir.Affine)]
    node.bias = np.concatenate([node.bias, [0.0]])


def _conv_groups(groups):
    def damage(graph):
        graph.nodes[_first(graph, nir.Conv2d)].groups = groups
    return damage


def _nan_weight(kind):
    def damage(graph):
        node = graph.nodes[_first(graph, kind)]
        node.weight = node.weight.copy()
        node.weight.reshape(-1)[0] = np.nan
    return damage


def _transposed_weight(graph):
    node = graph.nodes[_first(graph, nir.Affine)]
    node.weight = node.weight.T.copy()


def _stride_zero(graph):
    graph.nodes[_first(graph, nir.Conv2d)].stride = np.array([0, 1])


def _nan_threshold(graph):
    node = graph.nodes[_first(graph, nir.IF)]
    node.v_threshold = np.full_like(node.v_threshold, np.nan)


@pytest.mark.parametrize("damage", [
    _bad_affine_bias, _conv_groups(0), _conv_groups(3), _conv_groups(2.0), _conv_groups(-1),
    _nan_weight(nir.Affine), _nan_weight(nir.Conv2d), _transposed_weight, _stride_zero,
    _nan_threshold,
], ids=lambda f: f.__qualname__.split(".")[0] + str(getattr(f, "__closure__", None) and
                                                     f.__closure__[0].cell_contents))
def test_bad_node_parameters_are_refused_by_every_runner(graph, damage):
    damage(graph)
    with pytest.raises(NirError):
        check_graph(graph)
    with pytest.raises(NirError):
        run_nir(graph, X)
    from qcfs_lava.nir_exchange.importer import from_nir

    with pytest.raises(NirError):
        from_nir(graph)
    pytest.importorskip("snntorch", reason="the shim checks need snntorch")
    from qcfs_lava.nir_exchange import shims

    with pytest.raises(NirError):
        shims.run_snntorch(graph, X.astype(np.float32))


def test_metadata_read_back_from_a_file_is_checked(graph, tmp_path, capsys):
    from qcfs_lava.cli import main

    graph.metadata[NAMESPACE]["steps"] = "4"
    graph.nodes[_first(graph, nir.IF)].metadata[NAMESPACE].pop("v_init")
    path = write_nir(graph, tmp_path / "bad.nir")
    assert main(["run-nir", str(path), "--samples", "4"]) == 2
    err = capsys.readouterr().err
    assert "steps" in err and "Traceback" not in err


def test_an_intact_graph_still_runs(graph):
    sem = check_graph(graph)
    assert sem.steps == 4 and len(sem.class_names) == 10
    assert run_nir(graph, X).outputs.shape == (4, 2, 10)


# --------------------------------------------------------------------------- 9: recorded T


@pytest.mark.parametrize("steps", [10**9, STEPS_MAX + 1, 2**62])
def test_an_absurd_recorded_t_is_refused_in_nir(graph, steps):
    graph.metadata[NAMESPACE]["steps"] = steps
    with pytest.raises(NirError, match=str(STEPS_MAX)):
        run_nir(graph, X)


def _netx_with_metadata(tmp_path, **changes) -> Path:
    net = read_netx(EXAMPLE)
    meta = dict(net.metadata, **changes)
    path = tmp_path / "crafted.net"
    write_netx(dataclasses.replace(net, metadata=meta), path)
    return path


@pytest.mark.parametrize("steps", [10**9, STEPS_MAX + 1])
def test_an_absurd_recorded_t_is_refused_in_netx(tmp_path, steps):
    with pytest.raises(NetxFormatError, match="steps"):
        read_netx(_netx_with_metadata(tmp_path, steps=steps))


def test_the_largest_recorded_t_reads(tmp_path):
    assert read_netx(_netx_with_metadata(tmp_path, steps=STEPS_MAX)).metadata["steps"] == \
        STEPS_MAX


# --------------------------------------------------------------------------- 14: NetX metadata


@pytest.mark.parametrize(("key", "value"), [
    ("dataset", 123), ("dataset", ["digits"]), ("dataset", ""), ("steps", "abc"), ("steps", [4]),
    ("steps", 2.5), ("model", None), ("class_names", "0123"), ("class_names", [1, 2]),
    ("layer_copies", 0), ("checkpoint_sha256", 5),
])
def test_ill_typed_netx_metadata_is_a_typed_error(tmp_path, key, value, capsys):
    from qcfs_lava.cli import main

    path = _netx_with_metadata(tmp_path, **{key: value})
    with pytest.raises(NetxFormatError, match=key):
        read_netx(path)
    for argv in (["emulate", str(path), "--samples", "2"],
                 ["resources", str(path), "--samples", "2"], ["inspect", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert key in err and "Traceback" not in err


# --------------------------------------------------------------------------- 10: shims


def _with_unconnected_node(graph):
    graph = copy.deepcopy(graph)
    affine = graph.nodes[_first(graph, nir.Affine)]
    graph.nodes["extra"] = nir.Affine(weight=affine.weight.copy(), bias=affine.bias.copy())
    return graph


@pytest.mark.parametrize("variant", ["unconnected", "dangling-output", "unknown-edge"])
def test_the_reference_executor_refuses_broken_wiring(graph, variant):
    if variant == "unconnected":
        graph = _with_unconnected_node(graph)
    elif variant == "dangling-output":
        graph = _with_unconnected_node(graph)
        graph.edges.append((_first(graph, nir.Input), "extra"))  # fed, but feeds nothing
    else:
        graph.edges.append(("nowhere", _first(graph, nir.Output)))
    with pytest.raises(NirError, match="unconnected|feeds nothing|does not have"):
        run_nir(graph, X)


@pytest.mark.parametrize("runner", ["snntorch", "sinabs", "import"])
def test_shims_run_only_graphs_the_reference_runner_accepts(graph, runner, tmp_path):
    if runner != "import":
        pytest.importorskip(runner, reason=f"the {runner} shim needs {runner}")
    path = write_nir(_with_unconnected_node(graph), tmp_path / "extra.nir")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # in a child with a time limit: the old shims spun at full CPU on this graph
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from qcfs_lava.cli import main; sys.exit(main())",
         "run-nir", str(path), "--runner", runner, "--samples", "4"],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1000:])
    assert "unconnected" in proc.stderr or "exactly one Input" in proc.stderr, proc.stderr
    assert str(path) in proc.stderr and "Traceback" not in proc.stderr
