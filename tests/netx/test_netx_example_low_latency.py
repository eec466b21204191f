"""The committed low-latency CIFAR-subset example (SNN fine-tuned at its T) keeps its figures."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
from repo_files import EXPORTS, example_section

from qcfs_lava.netx import read_netx
from qcfs_lava.pipeline import convert_checkpoint

NAME = "resnet20-cifar10-subset-t4"
SECTION = example_section(NAME)


# the first 100 test images of the subset, committed beside the examples
IMAGES = f"npz:{EXPORTS / 'resnet20-cifar10-subset-test100.npz'}"


@pytest.mark.parametrize("suffix", [".pt", ".net"])
def test_recorded_sha256(suffix):
    digest = hashlib.sha256((EXPORTS / f"{NAME}{suffix}").read_bytes()).hexdigest()
    assert digest in SECTION


def _recorded() -> tuple[int, dict[int, float]]:
    """``(samples, {T: accuracy %})`` from the README's 'first N test images' line."""
    match = re.search(r"first (\d+) test images: ((?:T = \d+: \*\*[\d.]+%\*\*,? ?)+)", SECTION)
    pairs = re.findall(r"T = (\d+): \*\*([\d.]+)%\*\*", match.group(2))
    return int(match.group(1)), {int(t): float(a) for t, a in pairs}


@pytest.mark.slow
def test_emulate_reproduces_the_recorded_accuracy_at_t_1_2_4(tmp_path):
    """``qcfs-lava emulate`` on the file, the first test images, T = 1, 2 and 4."""
    from qcfs_lava.cli import main

    samples, recorded = _recorded()
    assert set(recorded) >= {1, 2, 4}
    out = tmp_path / "emu.json"
    steps = ",".join(str(t) for t in sorted(recorded))
    assert main(["emulate", str(EXPORTS / f"{NAME}.net"), "--steps", steps, "--samples",
                 str(samples), "--dataset", IMAGES, "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    for t, acc in recorded.items():
        assert runs[str(t)]["samples"] == samples
        assert 100 * runs[str(t)]["accuracy"] == pytest.approx(acc, abs=1e-6)


@pytest.mark.slow
def test_simulate_check_equals_the_emulator_on_20_images(capsys):
    from qcfs_lava.cli import main

    code = main(["simulate", str(EXPORTS / f"{NAME}.net"), "--samples", "20", "--steps", "4",
                 "--dataset", IMAGES, "--check"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Lava equals the emulator" in text


def test_file_is_what_the_checkpoint_converts_to():
    net_file = read_netx(EXPORTS / f"{NAME}.net")
    assert net_file.metadata["steps"] == 4 and net_file.metadata["dataset"] == "cifar10-subset"
    net_ckpt, _, _ = convert_checkpoint(EXPORTS / f"{NAME}.pt", steps=4)
    for a, b in zip(net_file.layers, net_ckpt.layers, strict=True):
        assert a.vth_mant == b.vth_mant and a.weight_exp == b.weight_exp
        np.testing.assert_array_equal(a.bias_mant, b.bias_mant)
        for sa, sb in zip(a.synapses, b.synapses, strict=True):
            np.testing.assert_array_equal(sa.weight, sb.weight)
