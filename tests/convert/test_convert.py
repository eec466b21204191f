import numpy as np
import pytest
import torch
from torch import nn
from torch_nets import randomize_bn as _randomize_bn
from torch_nets import small_cnn

from qcfs_lava import hardware as hw
from qcfs_lava.convert import ConversionConfig, convert, fold
from qcfs_lava.emulator import emulate
from qcfs_lava.errors import QuantizationError, UnsupportedLayerError
from qcfs_lava.model.qcfs import QCFS
from qcfs_lava.network import INPUT


def run_folded(layers, x):
    """Float64 forward of folded layers with QCFS activations (the ANN)."""
    outs = []
    for layer in layers:
        z = sum(s.apply(x if s.source == INPUT else outs[s.source]) for s in layer.synapses)
        z = z + torch.from_numpy(layer.bias).reshape((-1,) + (1,) * (len(layer.shape) - 1))
        if layer.thresh is not None:
            act = QCFS(4, 0.5, layer.thresh).double()
            z = act(z)
        outs.append(z)
    return outs[-1]


def test_fold_is_exact_including_pools():
    model = small_cnn()
    x = torch.randn(7, 2, 8, 8, dtype=torch.float64)
    layers = fold(model, (2, 8, 8))
    assert len(layers) == 3
    assert layers[1].synapses[0].weight.shape[2:] == (6, 6)  # 2x2 pool + 3x3 conv
    assert layers[1].synapses[0].stride == (2, 2)
    assert layers[2].synapses[0].weight.shape == (5, 6 * 4 * 4)  # pool folded into dense
    with torch.no_grad():
        want = model.double()(x)
        got = run_folded(layers, x)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_model_is_not_modified():
    model = small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    convert(model, (2, 8, 8), mean=[0.1, 0.2], std=[0.3, 0.4])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_first_layer_input_folding_with_padding_is_exact_up_to_rounding():
    model = small_cnn()
    mean, std = np.array([0.4, 0.6]), np.array([0.25, 0.5])
    net, report = convert(model, (2, 8, 8), mean=mean, std=std)
    first = net.layers[0]
    assert first.bias_mant.shape == first.shape  # padding makes the bias position-dependent
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 2, 8, 8)).astype(np.uint8)
    xf = torch.from_numpy((x / 255.0 - mean[:, None, None]) / std[:, None, None])
    with torch.no_grad():
        z = model.double()[1](model.double()[0](xf)).numpy()
    syn = first.synapses[0]
    acc = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)),
                                     torch.from_numpy(syn.weight.astype(np.float64)),
                                     padding=syn.padding).numpy()
    state = acc * 2.0 ** first.weight_exp + first.bias
    row = report.layers[0]
    got = state / row.scale
    # error budget: weight rounding (<= step/2 per weight, times 255 * fan-in) + bias rounding
    # bound: each of the 2*9 weights errs by <= max_weight_error per unit of x_int (<= 255),
    # plus the bias rounding
    bound = row.max_weight_error * 2 * 9 * 255 + row.max_bias_error
    assert np.abs(got - z).max() <= bound + 1e-9
    assert np.abs(got - z).max() < 0.05 * np.abs(z).max()


def test_quantization_ranges_and_half_threshold():
    net, report = convert(small_cnn(), (2, 8, 8), mean=0.5, std=0.5)
    for layer in net.layers[:-1]:
        assert layer.v_init * 2 == layer.v_th  # phi = 0.5: exactly half the threshold
        assert 1 <= layer.vth_mant <= hw.VTH_MANT_MAX
    for row in report.layers:
        assert row.max_weight_error <= row.weight_step + 1e-12  # half of one q step
        assert hw.WEIGHT_EXP_MIN <= row.weight_exp <= hw.WEIGHT_EXP_MAX
    for layer in net.layers:
        for syn in layer.synapses:
            assert np.abs(syn.weight).max() >= 200  # the 8-bit range is used
    text = report.format()
    assert "scale" in text and net.layers[0].name in text


def test_clip_floor_has_zero_initial_potential():
    net, _ = convert(small_cnn(phi=0.0), (2, 8, 8))
    assert all(layer.v_init == 0 for layer in net.layers)
    assert net.phi == 0.0


def test_integer_network_tracks_float_snn_on_random_model():
    """With T large, integer outputs / scale approach the float SNN's summed logits."""
    model = small_cnn()
    net, report = convert(model, (2, 8, 8), mean=0.5, std=0.5)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(64, 2, 8, 8)).astype(np.uint8)
    res = emulate(net, x, 32)
    with torch.no_grad():
        ann = model.double()(torch.from_numpy((x / 255.0 - 0.5) / 0.5)).numpy()
    agree = np.mean(res.predictions == ann.argmax(1))
    assert agree > 0.8


def test_unsupported_layers_reported_together():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.LSTM(2, 2),
        nn.Linear(2, 2),
    )
    with pytest.raises(UnsupportedLayerError) as err:
        convert(model, (1, 8, 8))
    msg = str(err.value)
    for name in ("ReLU", "MaxPool2d", "LSTM", "AvgPool2d", "replace_relu_with_qcfs", "Supported"):
        assert name in msg


def test_supported_list_and_checks_come_from_the_handler_registry(monkeypatch):
    from qcfs_lava import convert as convert_mod

    with pytest.raises(UnsupportedLayerError) as err:
        convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten(), nn.Linear(72, 2)),
                (1, 8, 8))
    msg = str(err.value)
    for handler in convert_mod.HANDLERS:
        assert handler.label in msg
        for cls in handler.types:
            assert convert_mod.handler_for(cls.__new__(cls)) is handler
    assert convert_mod.handler_for(nn.GELU()) is None
    calls = []
    real = convert_mod.check_supported
    monkeypatch.setattr(convert_mod, "check_supported", lambda m: calls.append(1) or real(m))
    convert(small_cnn(), (2, 8, 8))
    assert calls == [1]  # checked once per conversion


def test_nan_weights_are_refused_by_the_converter():
    model = small_cnn()
    with torch.no_grad():
        model[4].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantizationError, match="NaN"):
        convert(model, (2, 8, 8))


def test_pool_that_does_not_tile_is_rejected():
    with pytest.raises(UnsupportedLayerError, match="tile"):
        convert(small_cnn(), (2, 9, 9))


def test_pool_with_a_divisor_override_is_rejected():
    model = small_cnn()
    model[3] = nn.AvgPool2d(2, divisor_override=3)  # sums 4 values, divides by 3: not a mean
    with pytest.raises(UnsupportedLayerError, match="divisor_override"):
        convert(model, (2, 8, 8))


def test_bias_too_large_is_rejected():
    model = small_cnn()
    with torch.no_grad():
        model[10].bias[0] = 1e9
    with pytest.raises(QuantizationError, match="bias"):
        convert(model, (2, 8, 8))


def test_model_must_end_with_logits():
    model = nn.Sequential(nn.Linear(4, 3), QCFS())
    with pytest.raises(UnsupportedLayerError, match="logits"):
        convert(model, (4,))


def test_mlp_on_vector_input():
    torch.manual_seed(3)
    model = _randomize_bn(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8),
                                        QCFS(8, 0.5, 1.0), nn.Linear(8, 3)))
    net, _ = convert(model, (1, 4, 4), mean=0.2, std=0.3)
    assert net.layers[0].synapses[0].kind == "dense"
    x = np.random.default_rng(0).integers(0, 256, (10, 1, 4, 4)).astype(np.uint8)
    assert emulate(net, x, 8).potentials.shape == (10, 3)


@pytest.fixture()
def layer_copies_net():
    """``small_cnn`` converted with every single-synapse layer on a 4x finer grid."""
    plain, plain_rep = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4)
    net, rep = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4,
                       config=ConversionConfig(layer_copies=4))
    return plain, plain_rep, net, rep


def test_layer_copies_refine_the_grid_and_add_up(layer_copies_net):
    plain, plain_rep, net, rep = layer_copies_net
    split = 0
    for a, b, ra, rb in zip(plain.layers, net.layers, plain_rep.layers, rep.layers,
                            strict=True):
        assert rb.weight_step == pytest.approx(ra.weight_step / 4)
        assert rb.max_weight_error <= ra.max_weight_error
        assert all(np.abs(s.weight).max() <= hw.WEIGHT_MAX for s in b.synapses)
        assert 1 <= len(b.synapses) <= 4 and len({s.source for s in b.synapses}) == 1
        total = sum(s.weight.astype(np.int64) for s in b.synapses)
        # the copies add up to the same float weights, each grid within half its step
        # (weight_step is the float value of one unit of the stored weight 2q)
        np.testing.assert_allclose(total * rb.weight_step, a.synapses[0].weight * ra.weight_step,
                                   atol=ra.weight_step + rb.weight_step)
        split += len(b.synapses) > 1
    assert split == len(net.layers)  # every layer's largest weight needs 4 copies


def test_layer_copies_emulate_exactly(layer_copies_net):
    from netgen import reference_run

    _, _, net, _ = layer_copies_net
    x = np.random.default_rng(8).integers(0, 256, size=(5, 2, 8, 8), dtype=np.uint8)
    res = emulate(net, x, 6, record="spikes")
    pots, trains = reference_run(net, x, 6)
    np.testing.assert_array_equal(res.potentials, pots)
    for got, want in zip(res.spikes, trains, strict=True):
        np.testing.assert_array_equal(got, want)
    assert res.spike_counts.sum() > 0


@pytest.mark.lava
def test_layer_copies_lava_equals_emulator(layer_copies_net):
    from qcfs_lava.lava_sim import simulate
    from qcfs_lava.results import compare_results

    _, _, net, _ = layer_copies_net
    x = np.random.default_rng(9).integers(0, 256, size=(2, 2, 8, 8), dtype=np.uint8)
    assert compare_results(simulate(net, x, 4, record="spikes"),
                           emulate(net, x, 4, record="spikes")) == []


def test_export_layer_copies_round_trips_and_emulates(tmp_path, capsys):
    from pathlib import Path

    from qcfs_lava.cli import main
    from qcfs_lava.netx import read_netx
    from qcfs_lava.pipeline import convert_checkpoint

    ckpt = Path(__file__).resolve().parents[2] / "netx_exports" / "digits-cnn.pt"
    out = tmp_path / "copies.net"
    assert main(["export", str(ckpt), "--out", str(out), "--layer-copies", "4"]) == 0
    net = read_netx(out)
    direct, _, _ = convert_checkpoint(ckpt, layer_copies=4)
    plain, _, _ = convert_checkpoint(ckpt)
    assert net.metadata["layer_copies"] == 4
    assert sum(len(lay.synapses) for lay in net.layers) > len(plain.layers)
    x = np.random.default_rng(2).integers(0, 256, size=(4, *net.input_shape), dtype=np.uint8)
    a, b = emulate(net, x, 4), emulate(direct, x, 4)
    np.testing.assert_array_equal(a.potentials, b.potentials)
    capsys.readouterr()
    assert main(["export", str(ckpt), "--out", str(tmp_path / "bad.net"),
                 "--layer-copies", "0"]) == 2
    assert "--layer-copies must be 1..64" in capsys.readouterr().err


def test_default_config_is_the_plain_conversion():
    plain, plain_rep = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4)
    net, rep = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4, config=ConversionConfig())
    assert net.equals(plain) and rep.as_dicts() == plain_rep.as_dicts()
    assert net.ranges == hw.LOIHI_RANGES and ConversionConfig().non_defaults() == {}
    by_kw, _ = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4, layer_copies=2)
    by_config, _ = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4,
                           config=ConversionConfig(layer_copies=2))
    assert by_kw.equals(by_config) and not by_kw.equals(plain)


@pytest.mark.parametrize("bad", [
    {"weight_bits": 1}, {"weight_bits": 13}, {"weight_bits": 8.0}, {"weight_bits": True},
    {"synapse_copies": 0}, {"layer_copies": 65}, {"layer_copies": "4"},
    {"spike_payload": 0}, {"spike_payload": 1.5},
])
def test_config_rejects_bad_values(bad):
    name = next(iter(bad))
    with pytest.raises(QuantizationError, match=name):
        ConversionConfig(**bad)


def test_config_is_a_frozen_value_that_carries_the_spike_payload():
    import dataclasses

    config = ConversionConfig(spike_payload=7, synapse_copies=2)
    assert config.spike_payload == 7
    assert config.non_defaults() == {"synapse_copies": 2, "spike_payload": 7}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.layer_copies = 3
    with pytest.raises(QuantizationError, match="layer_copies"):
        convert(small_cnn(), (2, 8, 8), layer_copies=0)


def test_wider_weights_widen_the_ranges_the_emulator_follows(tmp_path):
    """A 12-bit conversion (an experiment): finer grid, widened ranges carried by the
    network, emulated exactly by those ranges, refused by the NetX writer."""
    from netgen import reference_run

    from qcfs_lava.errors import NetxFormatError
    from qcfs_lava.netx import write_netx

    net8, rep8 = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4)
    net12, rep12 = convert(small_cnn(), (2, 8, 8), mean=0.3, std=0.4,
                           config=ConversionConfig(weight_bits=12))
    assert net12.ranges == hw.IntegerRanges(12) and net12.ranges.widening == 16
    assert net12.ranges.drive_limit == 16 * hw.LOIHI_RANGES.drive_limit
    assert max(int(np.abs(s.weight).max()) for lay in net12.layers for s in lay.synapses) > 254
    for a, b in zip(rep8.layers, rep12.layers, strict=True):
        assert b.qmax > a.qmax and b.max_weight_error <= a.max_weight_error
    x = np.random.default_rng(4).integers(0, 256, (6, 2, 8, 8)).astype(np.uint8)
    res = emulate(net12, x, 6)
    pots, _ = reference_run(net12, x, 6)
    np.testing.assert_array_equal(res.potentials, pots)
    with pytest.raises(NetxFormatError, match="12-bit"):
        write_netx(net12, tmp_path / "wide.net")
    assert not (tmp_path / "wide.net").exists()
    from qcfs_lava.errors import NetworkValidationError
    from qcfs_lava.lava_sim import simulate

    with pytest.raises(NetworkValidationError, match="12-bit"):  # refused before Lava starts
        simulate(net12, x, 2)
