"""NIR export, the reference executor and qcfs-lava's own import, against the float SNN."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir", reason="the optional extra is absent: pip install "
                          "'qcfs-lava[nir]'")

from nir_models import DIGITS_CKPT, active_resnet, float_snn  # noqa: E402

from qcfs_lava.cli import main  # noqa: E402
from qcfs_lava.errors import NirError, UnsupportedLayerError  # noqa: E402
from qcfs_lava.model.qcfs import QCFS  # noqa: E402
from qcfs_lava.nir_exchange.executor import run_nir  # noqa: E402
from qcfs_lava.nir_exchange.export import export_checkpoint, to_nir  # noqa: E402
from qcfs_lava.nir_exchange.importer import from_nir  # noqa: E402
from qcfs_lava.nir_exchange.semantics import NAMESPACE, read_nir, write_nir  # noqa: E402


def spikes_by_source(graph, result) -> dict[str, float]:
    """Executor spike totals keyed by the torch module each IF node came from."""
    return {graph.nodes[n].metadata[NAMESPACE]["source"]: float(c.sum())
            for n, c in result.spike_counts.items()}


@pytest.fixture(scope="module")
def digits():
    from qcfs_lava.checkpoint import load_checkpoint
    from qcfs_lava.data import load_dataset, normalize

    ckpt = load_checkpoint(DIGITS_CKPT)
    split = load_dataset("digits")
    return ckpt, split.x_test, split.y_test, normalize(split.x_test, ckpt.mean, ckpt.std)


@pytest.fixture(scope="module")
def digits_nir(tmp_path_factory, digits):
    path = tmp_path_factory.mktemp("nir") / "digits-cnn.nir"
    export_checkpoint(DIGITS_CKPT, path, steps=8)
    return path


def test_digits_round_trip_equals_float_snn(digits, digits_nir):
    """export -> nir.read -> reference executor == float SNN on the whole test split."""
    ckpt, x, y, xf = digits
    graph = nir.read(digits_nir)
    result = run_nir(graph, x, labels=y)  # uint8 input, normalised from the metadata
    ref, ref_spikes = float_snn(ckpt.build_model().double(), xf.double(), 8)
    assert result.outputs.shape == ref.shape == (8, len(y), 10)
    np.testing.assert_allclose(result.outputs, ref, rtol=0, atol=1e-5)
    for t in range(1, 9):
        np.testing.assert_array_equal(result.predictions(t), ref[:t].mean(0).argmax(1))
    assert spikes_by_source(graph, result) == ref_spikes  # spike for spike, every layer
    assert result.accuracy(8) == pytest.approx(float(np.mean(ref.mean(0).argmax(1) == y)))
    assert result.accuracy(8) > 0.98


def test_digits_import_equals_float_snn(digits, digits_nir):
    ckpt, _, y, xf = digits
    net = from_nir(digits_nir)
    out = net.run(xf).numpy()
    ref, ref_spikes = float_snn(ckpt.build_model(), xf, 8)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(out.mean(0).argmax(1), ref.mean(0).argmax(1))
    spikes = {net.nodes[n].v_threshold.item(): m.spikes for n, m in net.nodes.items()
              if hasattr(m, "spikes")}
    assert sorted(spikes.values()) == sorted(ref_spikes.values())


def test_digits_graph_structure_and_metadata(digits, digits_nir):
    ckpt, *_ = digits
    graph = read_nir(digits_nir)
    kinds = [type(graph.nodes[n]).__name__ for n in graph.nodes]
    assert kinds.count("IF") == 2 and kinds.count("SumPool2d") == 2
    assert "AvgPool2d" not in kinds and nir.__version__ == "1.0.8"
    meta = graph.metadata[NAMESPACE]
    assert meta["format"] == "qcfs-lava-nir" and int(meta["version"]) == 1
    assert (meta["neuron"], meta["input"], meta["readout"]) == ("if-subtract-ge", "repeat",
                                                               "mean")
    assert int(meta["steps"]) == 8 and json.loads(meta["class_names"])[3] == "3"
    np.testing.assert_allclose(meta["input_normalization"]["mean"], ckpt.mean)
    model = ckpt.build_model()
    theta = model[6].thresh.item()
    if_node = graph.nodes["if_6"].metadata[NAMESPACE]
    assert (if_node["reset"], if_node["fire"]) == ("subtract", "ge")
    assert if_node["v_init"] == pytest.approx(0.5 * theta)
    np.testing.assert_array_equal(graph.nodes["if_6"].v_threshold, np.float32(theta))
    # the classifier carries the spike height theta and the pool's 1/4
    np.testing.assert_allclose(graph.nodes["affine_9"].weight,
                               model[9].weight.detach().numpy() * theta / 4, rtol=1e-6)
    np.testing.assert_allclose(graph.nodes["affine_9"].bias, model[9].bias.detach().numpy())


def test_residual_round_trip_equals_float_snn(tmp_path):
    model = active_resnet()
    x = torch.randn(24, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    graph = to_nir(model, (1, 8, 8), steps=6)
    write_nir(graph, tmp_path / "resnet.nir")
    graph = nir.read(tmp_path / "resnet.nir")
    result = run_nir(graph, x.numpy())
    ref, ref_spikes = float_snn(model.double(), x.double(), 6)
    np.testing.assert_allclose(result.outputs, ref, rtol=0, atol=1e-5)
    spikes = spikes_by_source(graph, result)
    assert spikes == ref_spikes and len(spikes) == 19 and min(spikes.values()) > 0
    # residual adds: two edges into the IF node after each of the 9 blocks
    fan_in = {n: sum(d == n for _, d in graph.edges) for n in graph.nodes}
    adds = [n for n, k in fan_in.items() if k == 2]
    assert len(adds) == 9 and all(isinstance(graph.nodes[n], nir.IF) for n in adds)
    # identity shortcuts are 1x1 convolutions carrying theta * identity
    block = model[1][1]
    shortcut = graph.nodes["conv_conv2_x_1_shortcut"]
    theta = model[1][0].act.thresh.item()
    np.testing.assert_allclose(shortcut.weight[:, :, 0, 0], theta * np.eye(4), rtol=1e-6)
    assert not list(block.shortcut)  # it was an identity in the torch model
    # the import runs it too
    out = from_nir(graph).double().run(x.double()).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name,size,kw", [("mlp", 8, {"width": 32}),
                                           ("vgg11", 32, {"width": 4, "hidden": 32})])
def test_other_zoo_models_round_trip(name, size, kw):
    """Flatten on the input, Dropout, stacked convs: the executor equals the float SNN."""
    from qcfs_lava.model.zoo import build_model

    torch.manual_seed(0)
    model = build_model(name, in_channels=1, num_classes=10, input_size=size, thresh=0.5,
                        **kw).eval()
    x = torch.randn(6, 1, size, size, generator=torch.Generator().manual_seed(0))
    graph = to_nir(model, (1, size, size), steps=4)
    result = run_nir(graph, x.numpy())
    ref, ref_spikes = float_snn(model.double(), x.double(), 4)
    np.testing.assert_allclose(result.outputs, ref, rtol=0, atol=1e-6)
    spikes = spikes_by_source(graph, result)
    assert spikes == ref_spikes and min(spikes.values()) > 0


def test_if_dynamics_on_a_hand_built_graph():
    """Our IF (>=, subtract, v_init) and NIR's literal IF, step by step."""

    def graph(w: float):
        meta = {NAMESPACE: {"version": 1, "reset": "subtract", "fire": "ge", "v_init": 0.5,
                            "spike_amplitude": 1.0}}
        nodes = {
            "input": nir.Input(input_type={"input": np.array([1])}),
            "fc": nir.Affine(weight=np.array([[w]]), bias=np.zeros(1)),
            "if": nir.IF(r=np.ones(1), v_threshold=np.ones(1), v_reset=np.zeros(1),
                         metadata=meta),
            "output": nir.Output(output_type={"output": np.array([1])}),
        }
        edges = [("input", "fc"), ("fc", "if"), ("if", "output")]
        gmeta = {"format": "qcfs-lava-nir", "version": 1, "neuron": "if-subtract-ge",
                 "input": "repeat", "readout": "mean"}
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata={NAMESPACE: gmeta})

    ones = np.ones((1, 1))
    # v: 0.5 -> 1.0 (fires on >=, back to 0) -> 0.5 -> 1.0 (fires) ...
    ours = run_nir(graph(0.5), ones, 6).outputs[:, 0, 0]
    np.testing.assert_array_equal(ours, [1, 0, 1, 0, 1, 0])
    # literal NIR: v(0) = 0, fires only on > 1, resets to 0: 0.5, 1.0, 1.5* -> 0, 0.5, 1.0, 1.5*
    literal = run_nir(graph(0.5), ones, 6, literal=True).outputs[:, 0, 0]
    np.testing.assert_array_equal(literal, [0, 0, 1, 0, 0, 1])
    # reset by subtraction keeps the excess: 0.5+1.25 = 1.75 -> 0.75 -> 2.0 -> 1.0 -> 2.25 ...
    np.testing.assert_array_equal(run_nir(graph(1.25), ones, 4).outputs[:, 0, 0], [1, 1, 1, 1])
    np.testing.assert_array_equal(run_nir(graph(1.25), ones, 4, literal=True).outputs[:, 0, 0],
                                  [1, 1, 1, 1])
    assert run_nir(graph(0.5), ones, 6).spike_counts["if"].tolist() == [3]


def test_foreign_graph_and_missing_steps_are_typed_errors(tmp_path):
    plain = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                                   nir.IF(r=np.ones(2), v_threshold=np.ones(2)))
    with pytest.raises(NirError, match="qcfs_lava"):
        run_nir(plain, np.ones((1, 3)), 2)
    with pytest.raises(NirError, match="qcfs_lava"):
        from_nir(plain)
    graph = to_nir(active_resnet(), (1, 8, 8))  # exported without steps
    with pytest.raises(NirError, match="steps"):
        run_nir(graph, np.zeros((1, 1, 8, 8)))
    with pytest.raises(NirError, match="not found"):
        read_nir(tmp_path / "missing.nir")
    (tmp_path / "junk.nir").write_bytes(b"not hdf5")
    with pytest.raises(NirError, match="cannot read"):
        read_nir(tmp_path / "junk.nir")


def test_unsupported_modules_named_in_one_error():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(18, 2), QCFS())
    with pytest.raises(UnsupportedLayerError) as info:
        to_nir(model, (1, 8, 8))
    assert "1 (ReLU)" in str(info.value) and "2 (MaxPool2d)" in str(info.value)
    assert "AvgPool2d" in str(info.value)


def test_cli_export_and_run(tmp_path, capsys):
    out = tmp_path / "d.nir"
    assert main(["export", str(DIGITS_CKPT), "--format", "nir", "--out", str(out),
                 "--steps", "8"]) == 0
    config = json.loads((tmp_path / "d.nir.json").read_text())
    assert config["format"] == "nir" and config["steps"] == 8
    assert [r["type"] for r in config["nodes"]].count("IF") == 2
    assert main(["run-nir", str(out), "--samples", "40", "--steps", "4,8", "--checkpoint",
                 str(DIGITS_CKPT), "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["steps"]["8"]["prediction_mismatches"] == 0
    assert result["steps"]["8"]["accuracy"] == result["steps"]["8"]["float_snn_accuracy"]
    # bad input: exit code 2, no traceback, the checkpoint untouched
    before = DIGITS_CKPT.read_bytes()
    assert main(["export", str(DIGITS_CKPT), "--format", "nir", "--out",
                 str(DIGITS_CKPT)]) == 2
    assert DIGITS_CKPT.read_bytes() == before
    assert main(["run-nir", str(tmp_path / "missing.nir")]) == 2
    assert "not found" in capsys.readouterr().err


def test_run_nir_file_scores_each_runner_against_the_float_snn(tmp_path, digits):
    from qcfs_lava.nir_exchange.runners import RUNNERS, run_nir_file

    _, x, y, _ = digits
    out = tmp_path / "d.nir"
    export_checkpoint(DIGITS_CKPT, out, steps=8)
    for runner in ("reference", "import"):
        result = run_nir_file(out, x[:20], y[:20], [2, 8], runner=runner,
                              checkpoint=DIGITS_CKPT)
        assert result.mismatches == 0 and set(result.steps) == {2, 8}
        assert result.to_dict()["steps"]["8"]["prediction_mismatches"] == 0
        assert "float SNN" in result.format().splitlines()[1]
    plain = run_nir_file(out, x[:20], y[:20], [8])
    assert plain.checkpoint is None and "float SNN" not in plain.format()
    assert "literal" in RUNNERS
    with pytest.raises(ValueError, match="not one of"):
        run_nir_file(out, x[:2], y[:2], [8], runner="bogus")


def test_nir_if_neuron_is_the_float_if_neuron_with_unit_spikes():
    from qcfs_lava.nir_exchange.importer import NirIFNeuron
    from qcfs_lava.snn import IFNeuron

    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    nir_if, float_if = NirIFNeuron(0.7, 0.35), IFNeuron(0.7, 0.5)
    assert isinstance(nir_if, IFNeuron) and float(nir_if.v_threshold) == pytest.approx(0.7)
    for _ in range(6):
        unit, scaled = nir_if(x), float_if(x)
        assert torch.equal(unit * float_if.thresh, scaled)  # same spikes, amplitude 1 vs theta
    assert nir_if.spikes == float_if.spikes > 0
