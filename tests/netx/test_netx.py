"""NetX HDF5 export / import (qcfs_lava.netx)."""

from __future__ import annotations

import contextlib
import json

import h5py
import numpy as np
import pytest

from qcfs_lava import netx
from qcfs_lava.errors import NetxFormatError
from qcfs_lava.network import FORMAT_VERSION, INPUT, IntegerNetwork, NeuronLayer, Synapse
from qcfs_lava.safe_hdf5 import write_digest_header

METADATA = {
    "steps": 16,
    "mean": [0.4914, 0.4822, 0.4465],
    "std": [0.247, 0.243, 0.261],
    "class_names": ["cat", "dog", "ship", "frog"],
    "checkpoint_sha256": "ab" * 32,
}


def weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Even integers in [-16, 14]: valid stored weights, small enough for any conv sum."""
    return 2 * rng.integers(-8, 8, size=shape)


def biases(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-500, 500, size=shape)


def mlp_net(rng: np.random.Generator) -> IntegerNetwork:
    """Dense from a vector input, a hidden spiking layer, the output layer."""
    return IntegerNetwork(
        input_shape=(12,),
        layers=(
            NeuronLayer(
                "fc1", (8,), (Synapse(INPUT, "dense", weights(rng, (8, 12))),),
                weight_exp=-1, bias_mant=biases(rng, (8,)), vth_mant=300, v_init=9600,
            ),
            NeuronLayer(
                "fc2", (4,), (Synapse(0, "dense", weights(rng, (4, 8))),),
                weight_exp=3, bias_mant=biases(rng, (4,)), vth_mant=None,
            ),
        ),
        levels=8,
        phi=0.5,
        metadata=METADATA,
    )


def cnn_net(rng: np.random.Generator) -> IntegerNetwork:
    """Conv with stride/padding/dilation, grouped conv, full-shape bias, flatten into dense.

    Channels, height and width all differ so that any axis mix-up changes shapes.
    """
    c1 = Synapse(INPUT, "conv", weights(rng, (4, 2, 3, 2)), stride=(2, 1), padding=(1, 0),
                 dilation=(1, 2))
    shape1 = c1.output_shape((2, 9, 7))  # (4, 5, 5)... computed, not assumed
    c2 = Synapse(0, "conv", weights(rng, (6, 2, 3, 3)), padding=1, groups=2)
    shape2 = c2.output_shape(shape1)
    return IntegerNetwork(
        input_shape=(2, 9, 7),
        layers=(
            NeuronLayer("conv1", shape1, (c1,), weight_exp=0,
                        bias_mant=biases(rng, (shape1[0],)), vth_mant=1000, v_init=32000),
            NeuronLayer("conv2", shape2, (c2,), weight_exp=2,
                        bias_mant=biases(rng, shape2), vth_mant=77, v_init=0),
            NeuronLayer("fc", (3,),
                        (Synapse(1, "dense", weights(rng, (3, int(np.prod(shape2))))),),
                        weight_exp=-2, bias_mant=biases(rng, (3,)), vth_mant=None),
        ),
        levels=4,
        phi=0.0,
        metadata={"steps": 8},
    )


def residual_net(rng: np.random.Generator) -> IntegerNetwork:
    """conv -> conv -> (conv + depthwise 1x1 identity shortcut) -> dense output."""
    ident = np.zeros((4, 1, 1, 1), dtype=np.int64)
    ident[:, 0, 0, 0] = 2 * rng.integers(1, 60, size=4)
    return IntegerNetwork(
        input_shape=(3, 6, 5),
        layers=(
            NeuronLayer("conv0", (4, 6, 5),
                        (Synapse(INPUT, "conv", weights(rng, (4, 3, 3, 3)), padding=1),),
                        weight_exp=0, bias_mant=biases(rng, (4,)), vth_mant=500, v_init=16000),
            NeuronLayer("conv1", (4, 6, 5),
                        (Synapse(0, "conv", weights(rng, (4, 4, 3, 3)), padding=1),),
                        weight_exp=1, bias_mant=biases(rng, (4,)), vth_mant=40, v_init=1280),
            NeuronLayer("add2", (4, 6, 5),
                        (Synapse(1, "conv", weights(rng, (4, 4, 3, 3)), padding=1),
                         Synapse(0, "conv", ident, groups=4)),
                        weight_exp=1, bias_mant=biases(rng, (4, 6, 5)), vth_mant=40,
                        v_init=1280),
            NeuronLayer("fc", (5,), (Synapse(2, "dense", weights(rng, (5, 120))),),
                        weight_exp=0, bias_mant=biases(rng, (5,)), vth_mant=None),
        ),
        levels=8,
        phi=0.5,
        metadata=METADATA,
    )


NETS = {"mlp": mlp_net, "cnn": cnn_net, "residual": residual_net}


@pytest.fixture(params=sorted(NETS))
def net(request) -> IntegerNetwork:
    return NETS[request.param](np.random.default_rng(7))


@pytest.fixture
def mlp_file(tmp_path):
    net = mlp_net(np.random.default_rng(1))
    return net, netx.write_netx(net, tmp_path / "mlp.net")


def text(ds) -> str:
    v = ds[()]
    if isinstance(v, np.ndarray):
        v = v[0]
    return v.decode("ascii")


# --------------------------------------------------------------------------- round trip


def test_round_trip_is_identical(net, tmp_path):
    path = netx.write_netx(net, tmp_path / "n.net")
    back = netx.read_netx(path)
    assert back.equals(net)
    assert back.metadata == net.metadata
    assert netx.netx_checksum(back) == netx.netx_checksum(net)


def test_round_trip_detects_a_changed_network(tmp_path):
    """equals() is what the round trip relies on: it must see a one-weight change."""
    net = cnn_net(np.random.default_rng(3))
    other = cnn_net(np.random.default_rng(4))
    back = netx.read_netx(netx.write_netx(other, tmp_path / "o.net"))
    assert not back.equals(net)


def test_overwrite_false_refuses_existing_file(mlp_file):
    net, path = mlp_file
    with pytest.raises(FileExistsError, match="exists"):
        netx.write_netx(net, path, overwrite=False)


# --------------------------------------------------------------------------- NetX layout


def test_sequential_layout_matches_lava_dl_conventions(tmp_path):
    net = cnn_net(np.random.default_rng(5))
    path = netx.write_netx(net, tmp_path / "cnn.net")
    with h5py.File(path, "r") as f:
        groups = f["layer"]
        types = [text(groups[str(k)]["type"]) for k in range(len(groups))]
        assert types == ["input", "conv", "conv", "flatten", "dense"]
        assert groups["0/type"].shape == (1,)  # as slayer writes it
        assert tuple(groups["0/shape"][()]) == (2, 9, 7)  # torch order; the reader reverses

        conv1, conv2, dense = groups["1"], groups["2"], groups["4"]
        syn1 = net.layers[0].synapses[0]
        assert conv1["weight"].dtype.kind == "i"
        np.testing.assert_array_equal(conv1["weight"][()], syn1.weight)  # (Cout, Cin/g, kH, kW)
        assert tuple(conv1["stride"][()]) == (2, 1)  # (H, W): the reader reverses to (x, y)
        assert tuple(conv1["padding"][()]) == (1, 0)
        assert tuple(conv1["dilation"][()]) == (1, 2)
        assert int(conv2["groups"][()]) == 2
        assert tuple(conv1["shape"][()]) == net.layers[0].shape
        np.testing.assert_array_equal(conv1["bias"][()], net.layers[0].bias_mant)
        # full-shape bias is stored in lava's (W, H, C) block order
        np.testing.assert_array_equal(
            conv2["bias"][()], net.layers[1].bias_mant.transpose(2, 1, 0)
        )
        np.testing.assert_array_equal(dense["weight"][()], net.layers[2].synapses[0].weight)
        assert tuple(groups["3/shape"][()]) == (int(np.prod(net.layers[1].shape)),)

        n1, out = conv1["neuron"], dense["neuron"]
        assert text(n1["type"]) == "QCFS_IF"
        assert int(n1["vThMant"][()]) == 1000 and int(n1["vInit"][()]) == 32000
        assert int(n1["weightExp"][()]) == 0 and int(n1["biasExp"][()]) == 6
        assert text(n1["reset"]) == "subtract" and text(n1["fire"]) == "ge"
        assert int(n1["spiking"][()]) == 1
        assert int(out["spiking"][()]) == 0 and "vThMant" not in out
        assert int(out["weightExp"][()]) == -2

        meta = f["qcfs/metadata"].attrs
        assert f["qcfs"].attrs["format_version"] == FORMAT_VERSION
        assert meta["levels"] == 4 and meta["phi"] == 0.0
        assert json.loads(meta["metadata"]) == {"steps": 8}
        assert [f[f"qcfs/layers/{i}"].attrs["name"] for i in range(3)] == [
            "conv1", "conv2", "fc"
        ]


def test_vector_input_dense_has_no_flatten(tmp_path):
    path = netx.write_netx(mlp_net(np.random.default_rng(0)), tmp_path / "m.net")
    with h5py.File(path, "r") as f:
        assert [text(f["layer"][str(k)]["type"]) for k in range(3)] == ["input", "dense", "dense"]
        assert f["layer/1/weight"].shape == (8, 12)


def test_residual_layer_is_a_merge_layer_lava_dl_rejects(tmp_path):
    net = residual_net(np.random.default_rng(2))
    assert not netx.is_lava_dl_sequential(net)
    path = netx.write_netx(net, tmp_path / "r.net")
    with h5py.File(path, "r") as f:
        types = [text(f["layer"][str(k)]["type"]) for k in range(len(f["layer"]))]
        assert types == ["input", "conv", "conv", netx.MERGE_TYPE, "flatten", "dense"]
        merge = f["layer/3"]
        assert "weight" not in merge  # nothing a sequential reader could mistake for a synapse
        syns = f["qcfs/layers/2/synapses"]
        assert len(syns) == 2
        assert [syns[str(j)].attrs["source"] for j in range(2)] == [1, 0]
        assert int(syns["1/groups"][()]) == 4 and syns["1/weight"].shape == (4, 1, 1, 1)
        np.testing.assert_array_equal(merge["bias"][()], net.layers[2].bias_mant.transpose(2, 1, 0))


# --------------------------------------------------------------------------- bad files


@contextlib.contextmanager
def crafted(path):
    """Edit a NetX file with h5py and stamp a matching digest, as a crafted (not merely
    damaged) file would have: the reader's own checks must then refuse it."""
    with h5py.File(path, "r+") as f:
        yield f
    write_digest_header(path)


def test_reading_a_missing_netx_file_says_no_such_file(tmp_path):
    with pytest.raises(NetxFormatError, match="no such file"):
        netx.read_netx(tmp_path / "nothing.net")


def test_reading_a_text_file_as_netx_says_not_hdf5(tmp_path):
    path = tmp_path / "text.net"
    path.write_text("not a network\n" * 100)
    with pytest.raises(NetxFormatError, match=r"text\.net: not an HDF5 file"):
        netx.read_netx(path)


def test_reading_a_truncated_netx_file_says_truncated_or_damaged(mlp_file):
    _, path = mlp_file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NetxFormatError, match=r"mlp\.net.*(truncated|damaged)"):
        netx.read_netx(path)


def test_missing_key_is_named(mlp_file):
    _, path = mlp_file
    with crafted(path) as f:
        del f["layer/2/weight"]
    with pytest.raises(NetxFormatError, match=r"missing '/layer/2/weight'"):
        netx.read_netx(path)


def test_newer_version_says_upgrade(mlp_file):
    _, path = mlp_file
    with crafted(path) as f:
        f["qcfs"].attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(NetxFormatError, match="upgrade qcfs-lava"):
        netx.read_netx(path)


def test_foreign_lava_dl_file_is_rejected(tmp_path):
    """A slayer-style CUBA network (no qcfs extension) is not silently misread."""
    path = tmp_path / "slayer.net"
    with h5py.File(path, "w") as f:
        f.create_dataset("layer/0/type", (1,), "S10", [b"input"])
        f.create_dataset("layer/0/shape", data=np.array([12]))
        g = f.create_group("layer/1")
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([4]))
        g.create_dataset("weight", data=np.ones((4, 12)))
        g.create_dataset("neuron/type", data="CUBA")
        g.create_dataset("neuron/vThMant", data=80)
    with pytest.raises(NetxFormatError, match=r"slayer\.net: a NetX file without.*extension"):
        netx.read_netx(path)


def test_foreign_neuron_type_is_rejected(mlp_file):
    _, path = mlp_file
    with crafted(path) as f:
        del f["layer/1/neuron/type"]
        f.create_dataset("layer/1/neuron/type", data=np.bytes_(b"CUBA"))
    with pytest.raises(NetxFormatError, match="'CUBA' neuron"):
        netx.read_netx(path)


def test_hdf5_edit_fails_the_checksum(mlp_file):
    _, path = mlp_file
    with h5py.File(path, "r+") as f:
        w = f["layer/1/weight"]
        w[0, 0] = w[0, 0] + 2  # still a valid even weight
    with pytest.raises(NetxFormatError, match="do not match the digest"):
        netx.read_netx(path)
    write_digest_header(path)  # a digest stamped over the edit: the checksum still refuses it
    with pytest.raises(NetxFormatError, match="checksum mismatch"):
        netx.read_netx(path)


def test_byte_level_corruption_is_detected(mlp_file):
    """Flip one bit of a stored weight in the raw bytes of the file."""
    _, path = mlp_file
    with h5py.File(path, "r") as f:
        offset = f["layer/2/weight"].id.get_offset()
    assert offset is not None
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x04  # the int16 stays even
    path.write_bytes(bytes(data))
    with pytest.raises(NetxFormatError, match="do not match the digest"):
        netx.read_netx(path)


def test_metadata_that_json_would_change_is_refused(tmp_path):
    net = mlp_net(np.random.default_rng(0))
    bad = IntegerNetwork(net.input_shape, net.layers, net.levels, net.phi,
                         metadata={"mean": (0.5, 0.5)})
    with pytest.raises(NetxFormatError, match="mean"):
        netx.write_netx(bad, tmp_path / "bad.net")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- atomic write


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    net = cnn_net(np.random.default_rng(0))
    calls = []

    def boom(group, layer):
        calls.append(layer.name)
        if len(calls) == 2:
            raise RuntimeError("disk full")

    monkeypatch.setattr(netx, "_write_neuron", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        netx.write_netx(net, tmp_path / "cnn.net")
    assert calls == ["conv1", "conv2"]
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_existing_file(mlp_file, monkeypatch):
    net, path = mlp_file
    before = path.read_bytes()

    def boom(group, layer):
        raise KeyboardInterrupt

    monkeypatch.setattr(netx, "_write_neuron", boom)
    with pytest.raises(KeyboardInterrupt):
        netx.write_netx(cnn_net(np.random.default_rng(9)), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    monkeypatch.undo()
    assert netx.read_netx(path).equals(net)


# --------------------------------------------------------------------------- describe / CLI


def test_describe_lists_layers_and_metadata(tmp_path):
    net = residual_net(np.random.default_rng(0))
    path = netx.write_netx(net, tmp_path / "r.net")
    text_out = netx.describe_netx(path)
    for name in ("conv0", "conv1", "add2", "fc", "class_names", "checkpoint_sha256", "concat"):
        assert name in text_out
    assert "1,0" in text_out  # the residual layer's two inputs
    assert netx.netx_checksum(net) in text_out


def test_inspect_command_lists_layers_and_refuses_a_non_hdf5_file(tmp_path, capsys):
    from qcfs_lava.cli import main

    path = netx.write_netx(mlp_net(np.random.default_rng(0)), tmp_path / "m.net")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fc1" in out and "fc2" in out
    bad = tmp_path / "bad.net"
    bad.write_text("x")
    assert main(["inspect", str(bad)]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err


# --------------------------------------------------------------------------- lava-dl reader


def _lava_netx():
    try:
        from qcfs_lava.lava_sim.compat import ensure_lava
    except ImportError as exc:
        pytest.skip(f"qcfs_lava.lava_sim.compat is not available: {exc}")
    ensure_lava()
    from lava.lib.dl.netx import hdf5, utils

    return hdf5, utils


@pytest.mark.lava
def test_lava_dl_netdict_reads_our_keys(tmp_path):
    hdf5, utils = _lava_netx()
    net = cnn_net(np.random.default_rng(5))
    path = netx.write_netx(net, tmp_path / "cnn.net")
    cfg = utils.NetDict(str(path))
    layers = cfg["layer"]
    assert [layers[k]["type"] for k in range(len(layers))] == [
        "input", "conv", "conv", "flatten", "dense"
    ]
    assert tuple(layers[0]["shape"][::-1]) == (7, 9, 2)
    assert layers[1]["neuron"]["type"] == "QCFS_IF"
    assert int(layers[1]["neuron"]["vThMant"]) == 1000
    np.testing.assert_array_equal(layers[1]["weight"], net.layers[0].synapses[0].weight)
    assert int(layers[2]["groups"]) == 2


@pytest.mark.lava
def test_lava_dl_network_builds_our_sequential_file(tmp_path, monkeypatch):
    """lava-dl's own hdf5.Network wires the file; its synapses compute what ours do.

    lava-dl 0.6.0 has no QCFS_IF neuron, so its neuron factory is replaced by one that
    records our neuron group and hands back a LIF (only the synapses are compared here).
    """
    import torch

    hdf5, _ = _lava_netx()
    from lava.proc.conv import utils as conv_utils
    from lava.proc.lif.process import LIF

    seen = []

    def neuron_params(neuron_config, input=False, reset_interval=None, reset_offset=0,
                      spike_exp=6):
        seen.append(neuron_config["type"])
        return {"neuron_proc": LIF, "bias_key": "bias_mant", "vth": 1 << 16, "du": 4095,
                "dv": 0, "bias_exp": 6, "num_message_bits": 0}

    monkeypatch.setattr(hdf5.Network, "get_neuron_params", staticmethod(neuron_params))
    net = cnn_net(np.random.default_rng(11))
    path = netx.write_netx(net, tmp_path / "cnn.net")
    lava_net = hdf5.Network(net_config=str(path), input_message_bits=8)
    assert seen == ["QCFS_IF"] * 3
    assert len(lava_net.layers) == 3
    assert lava_net.inp.shape == (7, 9, 2)  # lava's (x, y, f) = reversed (C, H, W)

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=net.input_shape)  # (C, H, W)
    src = x
    for layer, block in zip(net.layers[:2], lava_net.layers[:2], strict=True):
        syn = layer.synapses[0]
        want = torch.nn.functional.conv2d(
            torch.tensor(src[None], dtype=torch.float64),
            torch.tensor(syn.weight, dtype=torch.float64),
            stride=syn.stride, padding=syn.padding, dilation=syn.dilation, groups=syn.groups,
        )[0].numpy()
        s = block.synapse
        got = conv_utils.conv(
            src.transpose(2, 1, 0).astype(np.int64), s.weight.init.astype(np.int64),
            s.kernel_size.init, s.stride.init, s.padding.init, s.dilation.init,
            int(np.asarray(s.groups.init).reshape(-1)[0]),
        )
        np.testing.assert_array_equal(got.transpose(2, 1, 0), want)
        np.testing.assert_array_equal(
            block.neuron.bias_mant.init, layer.bias.transpose(2, 1, 0) >> 6
        )
        src = rng.integers(0, 2, size=layer.shape)

    dense = lava_net.layers[2].synapse.weights.init
    ours = net.layers[2].synapses[0].weight
    scale = [s for s in range(9) if np.array_equal(dense, ours * (1 << s))]
    assert scale, "lava-dl's Dense weights are not a power-of-two rescaling of ours"


@pytest.mark.lava
def test_lava_dl_network_refuses_residual_file(tmp_path, monkeypatch):
    hdf5, _ = _lava_netx()
    from lava.proc.lif.process import LIF

    def neuron_params(*args, **kwargs):
        return {"neuron_proc": LIF, "bias_key": "bias_mant", "vth": 1 << 16, "du": 4095,
                "dv": 0, "bias_exp": 6, "num_message_bits": 0}

    monkeypatch.setattr(hdf5.Network, "get_neuron_params", staticmethod(neuron_params))
    path = netx.write_netx(residual_net(np.random.default_rng(0)), tmp_path / "r.net")
    with pytest.raises(NotImplementedError, match=netx.MERGE_TYPE):
        hdf5.Network(net_config=str(path), input_message_bits=8)


# --------------------------------------------------------------------------- CLI export


def _checkpoint(tmp_path, model: str, **kwargs):
    import torch

    from qcfs_lava.checkpoint import Checkpoint, save_checkpoint
    from qcfs_lava.model.zoo import build_model

    torch.manual_seed(0)
    model_kwargs = {"in_channels": 1, "num_classes": 3, "input_size": 8, "activation": "qcfs",
                    "levels": 4, "phi": 0.5, "width": 4, **kwargs}
    m = build_model(model, **model_kwargs)
    ckpt = Checkpoint(
        model=model, model_kwargs=model_kwargs, state_dict=m.state_dict(), levels=4, phi=0.5,
        activation="qcfs", dataset="digits", input_shape=(1, 8, 8), num_classes=3,
        class_names=["zero", "one", "two"], mean=[0.5], std=[0.25],
    )
    return save_checkpoint(ckpt, tmp_path / f"{model}.pt")


@pytest.mark.parametrize("model", ["cnn", "resnet20"])
def test_cli_export_writes_a_readable_file(tmp_path, capsys, model):
    from qcfs_lava.checkpoint import checkpoint_sha256
    from qcfs_lava.cli import main

    ckpt = _checkpoint(tmp_path, model)
    out = tmp_path / "out" / f"{model}.net"
    assert main(["export", str(ckpt), "--out", str(out), "--steps", "16"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    net = netx.read_netx(out)
    assert net.metadata["steps"] == 16
    assert net.metadata["class_names"] == ["zero", "one", "two"]
    assert net.metadata["checkpoint_sha256"] == checkpoint_sha256(ckpt)
    assert net.levels == 4 and net.phi == 0.5 and net.input_shape == (1, 8, 8)
    config = json.loads(out.with_name(out.name + ".json").read_text())
    assert config["netx_checksum"] == netx.netx_checksum(net)
    assert len(config["quantization"]) == len(net.layers)
    assert netx.is_lava_dl_sequential(net) == (model == "cnn")
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".json"]


def test_cli_export_bad_checkpoint(tmp_path, capsys):
    from qcfs_lava.cli import main

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    out = tmp_path / "x.net"
    assert main(["export", str(bad), "--out", str(out)]) == 2
    assert "bad.pt" in capsys.readouterr().err
    assert not out.exists()


def test_geometry_fields_drive_equality_and_the_netx_keys(tmp_path):
    import dataclasses

    from qcfs_lava.network import GEOMETRY_FIELDS, fields_equal

    assert GEOMETRY_FIELDS == ("stride", "padding", "dilation", "groups")
    net = cnn_net(np.random.default_rng(3))
    path = netx.write_netx(net, tmp_path / "cnn.net")
    with h5py.File(path, "r") as f:
        convs = []
        f.visititems(lambda name, obj: convs.append(obj) if isinstance(obj, h5py.Group)
                     and "weight" in obj and obj["weight"].ndim == 4 else None)
        assert len(convs) == 2
        for group in convs:
            for key in GEOMETRY_FIELDS:
                assert key in group
    header_syn = netx._header(net)["layers"][0]["synapses"][0]
    syn = net.layers[0].synapses[0]
    for key in GEOMETRY_FIELDS:
        assert header_syn[key] == (list(getattr(syn, key)) if key != "groups" else syn.groups)
    conv = Synapse(INPUT, "conv", np.zeros((4, 2, 3, 3), np.int64))
    for key, value in {"stride": (2, 2), "padding": (1, 1), "dilation": (2, 2),
                       "groups": 2}.items():
        assert not fields_equal(conv, dataclasses.replace(conv, **{key: value})), key
    assert fields_equal(conv, dataclasses.replace(conv))
    assert net.equals(netx.read_netx(path))
