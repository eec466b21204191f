"""Sharded Lava validation: contiguous shards on Ray, merged into one exact result."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from fake_ray import FakeRay

pytest.importorskip("lava", reason="lava-nc is not installed")

from qcfs_lava.emulator import emulate  # noqa: E402
from qcfs_lava.errors import MissingExtraError, ShardFailedError  # noqa: E402
from qcfs_lava.lava_sim import shards  # noqa: E402
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse  # noqa: E402
from qcfs_lava.netx import read_netx  # noqa: E402
from qcfs_lava.results import compare_results  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "netx_exports" / "digits-cnn.net"


def _tiny_net():
    rng = np.random.default_rng(3)
    return IntegerNetwork((5,), (
        NeuronLayer("h", (6,), (Synapse(INPUT, "dense", 2 * rng.integers(-30, 31, (6, 5))),),
                    0, rng.integers(-100, 100, 6), 300, 300 << 5),
        NeuronLayer("out", (3,), (Synapse(0, "dense", 2 * rng.integers(-60, 61, (3, 6))),),
                    1, np.zeros(3, int), None, 0),
    ), levels=4, phi=0.5)


def test_shard_ranges_are_contiguous_and_balanced():
    assert shards.shard_ranges(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert shards.shard_ranges(2, 4) == [(0, 1), (1, 2)]
    assert shards.shard_ranges(0, 2) == []
    for n, k in ((17, 4), (5, 5), (100, 7)):
        ranges = shards.shard_ranges(n, k)
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        sizes = [b - a for a, b in ranges]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("record", [None, "counts", "spikes"])
def test_merged_shards_equal_one_run(record):
    net = _tiny_net()
    x = np.random.default_rng(0).integers(0, 256, (7, 5), dtype=np.uint8)
    whole = emulate(net, x, 4, record=record)
    parts = [emulate(net, x[a:b], 4, record=record) for a, b in shards.shard_ranges(7, 3)]
    merged = shards.merge_results(parts)
    assert compare_results(merged, whole) == []
    np.testing.assert_array_equal(merged.saturations, whole.saturations)
    np.testing.assert_array_equal(merged.spike_counts, whole.spike_counts)
    if record == "counts":
        for a, b in zip(merged.neuron_counts, whole.neuron_counts, strict=True):
            np.testing.assert_array_equal(a, b)


def test_without_ray_workers_fail_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    net = _tiny_net()
    with pytest.raises(MissingExtraError, match=r"qcfs-lava\[ray\]"):
        shards.simulate_sharded(net, np.zeros((4, 5), np.uint8), 2, workers=2)


def test_cli_rejects_bad_workers(capsys):
    from qcfs_lava.cli import main

    assert main(["simulate", str(EXAMPLE), "--samples", "2", "--workers", "0"]) == 2
    out = capsys.readouterr()
    assert "--workers must be >= 1" in out.err + out.out


def test_a_failing_shard_is_reported_with_its_range_and_others_are_kept(monkeypatch):
    net = _tiny_net()
    x = np.random.default_rng(1).integers(0, 256, (6, 5), dtype=np.uint8)

    def run_shard(net, xs, steps, record, config, *rest):
        if xs[0, 0] == x[2, 0] and np.array_equal(xs[0], x[2]):  # the second shard
            raise RuntimeError("node lost")
        return emulate(net, xs, steps, record=record)

    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    monkeypatch.setattr(shards, "_run_shard", run_shard)
    with pytest.raises(ShardFailedError, match=r"samples 2\.\.3: RuntimeError: node lost") as info:
        shards.simulate_sharded(net, x, 3, workers=3, record="counts")
    assert set(info.value.failures) == {(2, 4)}
    assert set(info.value.completed) == {(0, 2), (4, 6)}
    want = emulate(net, x[4:6], 3, record="counts")
    assert compare_results(info.value.completed[(4, 6)], want) == []


@pytest.mark.slow
@pytest.mark.lava
def test_two_workers_equal_one_on_the_digits_example():
    pytest.importorskip("ray", reason="ray is not installed (pip install \"qcfs-lava[ray]\")")
    from qcfs_lava.data import load_dataset
    from qcfs_lava.lava_sim import simulate

    net = read_netx(EXAMPLE)
    split = load_dataset("digits")
    x, y = split.x_test[:5], split.y_test[:5]
    one = simulate(net, x, 3, labels=y, record="spikes")
    two = shards.simulate_sharded(net, x, 3, workers=2, labels=y, record="spikes")
    assert two.extra["shards"] == 2 and two.extra["shard_ranges"] == [[0, 2], [2, 5]]
    assert compare_results(two, one) == []
    np.testing.assert_array_equal(two.saturations, one.saturations)
    np.testing.assert_array_equal(two.spike_counts, one.spike_counts)
    for a, b in zip(two.spikes, one.spikes, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(two.labels, y)
    assert compare_results(two, emulate(net, x, 3, record="spikes")) == []
