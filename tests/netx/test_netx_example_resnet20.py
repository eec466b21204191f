"""The committed ResNet-20 CIFAR-subset example reproduces its recorded accuracy."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
from repo_files import EXPORTS, example_section, needs_cifar10_subset

from qcfs_lava.netx import read_netx
from qcfs_lava.pipeline import convert_checkpoint

NAME = "resnet20-cifar10-subset"
SECTION = example_section(NAME)


@pytest.mark.parametrize("suffix", [".pt", ".net"])
def test_example_files_match_the_sha256_in_netx_exports_readme(suffix):
    digest = hashlib.sha256((EXPORTS / f"{NAME}{suffix}").read_bytes()).hexdigest()
    assert digest in SECTION


TEST_IMAGES = EXPORTS / f"{NAME}-test100.npz"


@pytest.mark.slow
def test_emulate_reproduces_the_recorded_subset_accuracy(tmp_path):
    """``qcfs-lava emulate`` on the file, the first 100 test images (committed), the file's T."""
    from qcfs_lava.cli import main

    match = re.search(r"first (\d+) test images at T = (\d+): \*\*([\d.]+)%\*\*", SECTION)
    samples, steps, recorded = int(match.group(1)), int(match.group(2)), float(match.group(3))
    assert read_netx(EXPORTS / f"{NAME}.net").metadata["steps"] == steps  # the default T
    out = tmp_path / "emu.json"
    assert main(["emulate", str(EXPORTS / f"{NAME}.net"), "--dataset", f"npz:{TEST_IMAGES}",
                 "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][str(steps)]
    assert run["samples"] == samples and run["steps"] == steps
    assert 100 * run["accuracy"] == pytest.approx(recorded, abs=1e-6)


def test_committed_test_images_are_the_subsets_first_100():
    digest = hashlib.sha256(TEST_IMAGES.read_bytes()).hexdigest()
    assert digest in SECTION
    assert TEST_IMAGES.stat().st_size < 400_000
    needs_cifar10_subset()
    from qcfs_lava.data import load_dataset, load_npz

    subset, ours = load_dataset("cifar10-subset"), load_npz(TEST_IMAGES)
    np.testing.assert_array_equal(ours.x_test, subset.x_test[:100])
    np.testing.assert_array_equal(ours.y_test, subset.y_test[:100])
    assert ours.class_names == subset.class_names


def test_file_is_what_the_checkpoint_converts_to():
    net_file = read_netx(EXPORTS / f"{NAME}.net")
    net_ckpt, _, _ = convert_checkpoint(EXPORTS / f"{NAME}.pt", steps=net_file.metadata["steps"])
    assert net_file.metadata["dataset"] == "cifar10-subset"
    for a, b in zip(net_file.layers, net_ckpt.layers, strict=True):
        assert a.vth_mant == b.vth_mant and a.weight_exp == b.weight_exp
        np.testing.assert_array_equal(a.bias_mant, b.bias_mant)
        for sa, sb in zip(a.synapses, b.synapses, strict=True):
            np.testing.assert_array_equal(sa.weight, sb.weight)
