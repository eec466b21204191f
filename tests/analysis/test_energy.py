"""Energy estimates: formulas, constants, overrides."""

from __future__ import annotations

import json

import pytest

from qcfs_lava.analysis.counts import LayerOpCounts, OpCounts
from qcfs_lava.analysis.energy import (
    EnergyConstants,
    estimate_energy,
    format_constants,
    format_energy_table,
)
from qcfs_lava.errors import AnalysisError


def _ops() -> OpCounts:
    first = LayerOpCounts("conv1", neurons=10, spiking=True, spikes=30, synops=0,
                          input_macs=400, neuron_updates=80, active_updates=30, ann_macs=100,
                          ann_density=0.5, firing_rate=30 / 80)
    second = LayerOpCounts("fc", neurons=3, spiking=False, spikes=0, synops=90, input_macs=0,
                           neuron_updates=24, active_updates=0, ann_macs=60, ann_density=None,
                           firing_rate=0.0)
    return OpCounts(steps=4, num_samples=2, latency_steps=6, layers=(first, second))


def test_published_defaults_and_sources():
    c = EnergyConstants()
    values = {row["name"]: row["value"] for row in c.table()}
    assert values["loihi1_synop_pj"] == 23.6
    assert values["loihi1_neuron_active_pj"] == 81.0
    assert values["loihi1_neuron_inactive_pj"] == 52.0
    assert values["loihi1_spike_pj"] == 1.7
    assert values["loihi1_hop_pj"] == 3.5
    assert values["cmos_ac_pj"] == 0.9
    assert values["cmos_mac_pj"] == 4.6
    assert values["loihi2_pilotnet_mj"] == 1.09
    table = format_constants(c)
    assert "Davies" in table and "Horowitz" in table and "PilotNet" in table


def test_energy_estimate_follows_the_per_operation_formulas():
    e = estimate_energy(_ops())
    conv, fc = e.layers
    assert conv.loihi1_pj == pytest.approx(23.6 * 400 + 81 * 30 + 52 * 50 + 1.7 * 30)
    assert fc.loihi1_pj == pytest.approx(23.6 * 90 + 52 * 24)
    assert conv.cmos_snn_pj == pytest.approx(4.6 * 400)
    assert fc.cmos_snn_pj == pytest.approx(0.9 * 90)
    assert e.total_pj("cmos_ann") == pytest.approx(4.6 * 160)
    assert e.per_sample_uj("cmos_snn") == pytest.approx((4.6 * 400 + 0.9 * 90) / 2 * 1e-6)
    d = e.to_dict()
    assert "estimate" in d["label"]
    assert d["loihi2_reference"]["value_mj"] == 1.09
    assert "**total**" in format_energy_table(e)


def test_overrides_cli_and_json(tmp_path):
    c = EnergyConstants().with_overrides(["cmos_ac_pj=0.03", "loihi1_hops_per_spike = 2"])
    assert c.cmos_ac_pj == 0.03 and c.loihi1_hops_per_spike == 2.0
    e = estimate_energy(_ops(), c)
    assert e.layers[0].loihi1_pj == pytest.approx(
        23.6 * 400 + 81 * 30 + 52 * 50 + (1.7 + 2 * 3.5) * 30
    )
    assert "(overridden)" in format_constants(c)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"cmos_mac_pj": 3.1}))
    assert EnergyConstants.from_json(path).cmos_mac_pj == 3.1
    with pytest.raises(AnalysisError, match="unknown energy constant"):
        EnergyConstants().with_overrides({"nope": 1})
    with pytest.raises(AnalysisError, match="not a number"):
        EnergyConstants().with_overrides(["cmos_ac_pj=abc"])
    with pytest.raises(AnalysisError, match="name=value"):
        EnergyConstants().with_overrides(["cmos_ac_pj"])
    with pytest.raises(AnalysisError, match=">= 0"):
        EnergyConstants().with_overrides({"cmos_ac_pj": -1})
