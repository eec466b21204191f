"""The committed graded ResNet-20 CIFAR-subset example (P = L = 4, exported at T = 1)."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
from repo_files import EXPORTS, example_section, needs_cifar10_subset

from qcfs_lava.netx import read_netx

NAME = "resnet20-cifar10-subset-graded4"
SECTION = example_section(NAME)


def test_recorded_sha256_and_graded_neurons():
    digest = hashlib.sha256((EXPORTS / f"{NAME}.net").read_bytes()).hexdigest()
    assert digest in SECTION
    net = read_netx(EXPORTS / f"{NAME}.net")
    assert net.payload == net.levels == 4 and net.metadata["steps"] == 1
    assert all(layer.payload == 4 for layer in net.layers[:-1])
    config = json.loads((EXPORTS / f"{NAME}.net.json").read_text())
    assert config["graded"] == 4


def test_file_is_what_the_checkpoint_converts_to_with_graded_spikes():
    from qcfs_lava.convert import ConversionConfig
    from qcfs_lava.pipeline import convert_checkpoint

    net_file = read_netx(EXPORTS / f"{NAME}.net")
    net_ckpt, _, _ = convert_checkpoint(EXPORTS / "resnet20-cifar10-subset.pt", steps=1,
                                        config=ConversionConfig(spike_payload=4))
    for a, b in zip(net_file.layers, net_ckpt.layers, strict=True):
        assert (a.vth_mant, a.weight_exp, a.v_init, a.payload) == (
            b.vth_mant, b.weight_exp, b.v_init, b.payload)
        np.testing.assert_array_equal(a.bias_mant, b.bias_mant)
        for sa, sb in zip(a.synapses, b.synapses, strict=True):
            np.testing.assert_array_equal(sa.weight, sb.weight)


def test_emulate_reproduces_the_recorded_accuracy(tmp_path):
    needs_cifar10_subset()
    from qcfs_lava.cli import main

    match = re.search(r"first (\d+) test images at T = (\d+): \*\*([\d.]+)%\*\*", SECTION)
    samples, steps, recorded = int(match.group(1)), int(match.group(2)), float(match.group(3))
    out = tmp_path / "emu.json"
    assert main(["emulate", str(EXPORTS / f"{NAME}.net"), "--steps", str(steps), "--samples",
                 str(samples), "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][str(steps)]
    assert run["samples"] == samples and run["steps"] == steps
    assert 100 * run["accuracy"] == pytest.approx(recorded, abs=1e-6)


@pytest.mark.slow
@pytest.mark.lava
def test_simulate_check_equals_the_emulator_on_20_images(capsys):
    """Lava (graded Conv/Dense, 9 residual adds) equals the emulator, spike for spike."""
    needs_cifar10_subset()
    pytest.importorskip("lava", reason="lava-nc is not installed")
    from qcfs_lava.cli import main

    code = main(["simulate", str(EXPORTS / f"{NAME}.net"), "--steps", "1", "--samples", "20",
                 "--check"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Lava equals the emulator" in text and "20 samples" in text
