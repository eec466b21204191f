"""Records kept inside the Lava neuron models; `simulate --check` through spike-train digests."""

from __future__ import annotations

import numpy as np
import pytest
from repo_files import EXAMPLE
from test_digest import KEY, _digest_net, _x

from qcfs_lava.emulator import emulate
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse

pytest.importorskip("lava", reason="lava-nc is not installed")

from qcfs_lava.lava_sim import LavaRunConfig, simulate  # noqa: E402
from qcfs_lava.lava_sim.check import check_against_emulator  # noqa: E402
from qcfs_lava.lava_sim.procs.neuron import PyQcfsNeuronModelFixed  # noqa: E402
from qcfs_lava.results import compare_results  # noqa: E402

pytestmark = pytest.mark.lava

TARGET = {"layer": "exact", "sample": 2, "step": 3, "neuron": 1}


class _ThresholdPlusOne(PyQcfsNeuronModelFixed):
    """The bit-accurate model, but with ``v_th + 1`` for one neuron of one layer at one step
    of one sample (``TARGET``; the sample counted over the whole request).

    ``v >= v_th + 1`` and a reset by ``v_th + 1`` are ``v - 1 >= v_th`` and a reset by
    ``v_th`` of ``v - 1``; without a spike the 1 is given back before the next step.
    """

    def _integrate(self, acc, k, t):
        p = self.proc_params
        undo = getattr(self, "_undo", None)
        if undo is not None:
            i, lowered = undo
            if self.v.reshape(-1)[i] == lowered:  # did not spike: v keeps its value
                self.v.reshape(-1)[i] += 1
            self._undo = None
        v = super()._integrate(acc, k, t)
        if (p["name"] == TARGET["layer"] and p["first_sample"] + k == TARGET["sample"]
                and t == TARGET["step"]):
            i = TARGET["neuron"]
            v.reshape(-1)[i] -= 1
            self._undo = (i, int(v.reshape(-1)[i]))
        return v


def test_perturbed_neuron_fails_the_check_naming_layer_sample_step_and_neuron():
    net = _digest_net()
    config = LavaRunConfig(neuron_model=_ThresholdPlusOne)
    out = check_against_emulator(net, _x(6), 5, key=KEY, config=config, max_rerun=3)
    assert not out.ok
    first = out.mismatches[0]
    assert (first.field, first.layer, first.sample) == ("spike-train digests", "exact", 2)
    assert out.lava.digests[:, 0].tolist() == out.emulator.digests[:, 0].tolist()  # stem
    assert out.rerun == (2, 3)
    loc = out.first
    assert (loc.field, loc.layer, loc.sample, loc.step, loc.neuron) == ("spikes", "exact", 2, 3,
                                                                        (1,))
    assert loc.detail.startswith("1 differing spike entries")
    assert "lava 0, emulator 1" in loc.detail


def test_unperturbed_check_passes_and_counts_equal_the_emulator():
    net = _digest_net()
    out = check_against_emulator(net, _x(), 5, key=KEY)
    assert out.ok and out.rerun is None and out.first is None
    for a, b in zip(out.lava.neuron_counts, out.emulator.neuron_counts, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out.lava.digests, out.emulator.digests)


@pytest.mark.slow
def test_counts_equal_the_previous_path_on_the_digits_example():
    from qcfs_lava.data import load_dataset
    from qcfs_lava.netx import read_netx

    net = read_netx(EXAMPLE)
    x = load_dataset("digits").x_test[:3]
    new = simulate(net, x, 4, record="counts", digest_key=KEY)
    old = simulate(net, x, 4, record="counts", config=LavaRunConfig(record_transport="var"))
    assert compare_results(new, old) == []
    for a, b in zip(new.neuron_counts, old.neuron_counts, strict=True):
        assert a.dtype == b.dtype == np.int32
        np.testing.assert_array_equal(a, b)
    assert sum(int(c.sum()) for c in new.neuron_counts) > 0
    emu = emulate(net, x, 4, record="counts", digest_key=KEY)
    np.testing.assert_array_equal(new.digests, emu.digests)


@pytest.mark.slow
def test_counts_and_trains_equal_the_previous_path_on_a_residual_network():
    rng = np.random.default_rng(2)
    c = 3

    def w(shape, m=127):
        return 2 * rng.integers(-m, m + 1, shape)

    def layer(name, shape, syns, e, vth):
        return NeuronLayer(name, shape, tuple(syns), e, rng.integers(-400, 400, shape[0]), vth,
                           vth << 5)

    net = IntegerNetwork((1, 5, 5), (
        layer("stem", (c, 5, 5), [Synapse(INPUT, "conv", w((c, 1, 3, 3), 20), padding=1)], 0,
              300),
        layer("a", (c, 5, 5), [Synapse(0, "conv", w((c, c, 3, 3)), padding=1)], 5, 900),
        layer("b", (c, 5, 5), [Synapse(1, "conv", w((c, c, 3, 3)), padding=1),
                               Synapse(0, "conv", np.full((c, 1, 1, 1), 128), groups=c)], 5,
              900),
        NeuronLayer("out", (4,), (Synapse(2, "dense", w((4, c * 25))),), 2, np.zeros(4, int),
                    None, 0),
    ), levels=4, phi=0.5)
    x = rng.integers(0, 256, (3, 1, 5, 5), dtype=np.uint8)
    for record in ("counts", "spikes"):
        new = simulate(net, x, 6, record=record)
        old = simulate(net, x, 6, record=record, config=LavaRunConfig(record_transport="var"))
        assert compare_results(new, old) == []
        for a, b in zip(new.neuron_counts, old.neuron_counts, strict=True):
            np.testing.assert_array_equal(a, b)
        assert new.spike_counts[:, 2].sum() > 0
    assert check_against_emulator(net, x, 6).ok


def test_digests_need_the_file_transport():
    from qcfs_lava.errors import NetworkValidationError

    net = _digest_net()
    with pytest.raises(NetworkValidationError, match="record_transport"):
        simulate(net, _x(1), 2, digest_key=KEY, config=LavaRunConfig(record_transport="var"))
    with pytest.raises(NetworkValidationError, match="record_transport"):
        LavaRunConfig(record_transport="pipe")


@pytest.mark.slow
def test_two_workers_give_the_same_counts_and_check_results():
    pytest.importorskip("ray", reason="ray is not installed (extra: qcfs-lava[ray])")
    net = _digest_net()
    x = _x(5)
    one = check_against_emulator(net, x, 4, key=KEY)
    two = check_against_emulator(net, x, 4, key=KEY, workers=2)
    assert one.ok and two.ok
    assert two.lava.extra["shards"] == 2
    assert compare_results(one.lava, two.lava) == []
    np.testing.assert_array_equal(one.lava.digests, two.lava.digests)
    for a, b in zip(one.lava.neuron_counts, two.lava.neuron_counts, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_cli_check_reports_the_digest_key_and_passes(tmp_path, capsys):
    import json

    from qcfs_lava.cli import main
    from qcfs_lava.netx import write_netx

    net = _digest_net()
    path = write_netx(net, tmp_path / "d.net")
    data = tmp_path / "d.npz"
    x = _x(6)[:, 0]
    np.savez(data, x=x, y=np.arange(6) % 3, x_test=x, y_test=np.arange(6) % 3)
    out_json = tmp_path / "sim.json"
    code = main(["simulate", str(path), "--dataset", f"npz:{data}", "--steps", "3",
                 "--samples", "3", "--check", "--json", str(out_json)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Lava equals the emulator (the 64-bit digests" in text
    check = json.loads(out_json.read_text())["check"]
    assert check["ok"] and check["mismatches"] == [] and isinstance(check["digest_key"], int)
