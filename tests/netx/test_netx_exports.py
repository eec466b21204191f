"""The committed example export loads and reproduces its recorded accuracy."""

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from qcfs_lava.data import load_dataset
from qcfs_lava.emulator import emulate
from qcfs_lava.netx import read_netx
from qcfs_lava.pipeline import convert_checkpoint

EXPORTS = Path(__file__).resolve().parents[2] / "netx_exports"
README = (EXPORTS / "README.md").read_text()


def _recorded(column: int, steps: int) -> float:
    row = re.search(rf"^\| {steps} \|(.*)$", README, re.M).group(1)
    cell = row.split("|")[column]
    return float(re.search(r"([\d.]+)%", cell).group(1)) / 100


@pytest.mark.parametrize("name", ["digits-cnn.pt", "digits-cnn.net"])
def test_example_files_match_the_sha256_in_netx_exports_readme(name):
    digest = hashlib.sha256((EXPORTS / name).read_bytes()).hexdigest()
    assert digest in README


def test_example_reproduces_recorded_integer_accuracy():
    net = read_netx(EXPORTS / "digits-cnn.net")
    assert net.metadata["steps"] == 8
    split = load_dataset("digits")
    res = emulate(net, split.x_test, 8, labels=split.y_test)
    assert len(split.y_test) == 359
    assert res.accuracy == pytest.approx(_recorded(2, 8), abs=1e-4)


def test_file_is_what_the_checkpoint_converts_to():
    net_file = read_netx(EXPORTS / "digits-cnn.net")
    net_ckpt, _, _ = convert_checkpoint(EXPORTS / "digits-cnn.pt", steps=8)
    for a, b in zip(net_file.layers, net_ckpt.layers, strict=True):
        assert a.vth_mant == b.vth_mant and a.weight_exp == b.weight_exp
        np.testing.assert_array_equal(a.bias_mant, b.bias_mant)
        for sa, sb in zip(a.synapses, b.synapses, strict=True):
            np.testing.assert_array_equal(sa.weight, sb.weight)


@pytest.mark.lava
def test_example_in_lava_equals_emulator_spike_for_spike():
    from qcfs_lava.lava_sim import simulate
    from qcfs_lava.results import compare_results

    net = read_netx(EXPORTS / "digits-cnn.net")
    split = load_dataset("digits")
    x, y = split.x_test[:6], split.y_test[:6]
    lava = simulate(net, x, 8, labels=y, record="spikes")
    emu = emulate(net, x, 8, labels=y, record="spikes")
    assert compare_results(lava, emu) == []
    assert lava.spike_counts.min() > 0  # every hidden layer is active in every sample
