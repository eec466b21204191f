"""Report and sweep on tiny randomly initialised models (fast, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qcfs_lava.checkpoint import Checkpoint, save_checkpoint
from qcfs_lava.data import load_dataset
from qcfs_lava.errors import AnalysisError
from qcfs_lava.model.zoo import build_model
from qcfs_lava.report import ReportConfig, make_report


def _checkpoint(tmp_path, activation="qcfs", name="tiny.pt"):
    torch.manual_seed(0)
    kwargs = dict(in_channels=1, num_classes=10, input_size=8, activation=activation,
                  levels=4, phi=0.5, thresh=2.0, width=4)
    model = build_model("cnn", **kwargs)
    split = load_dataset("digits")
    ckpt = Checkpoint(model="cnn", model_kwargs=kwargs, state_dict=model.state_dict(),
                      levels=4, phi=0.5, activation=activation, dataset="digits",
                      input_shape=(1, 8, 8), num_classes=10, class_names=split.class_names,
                      mean=split.mean.tolist(), std=split.std.tolist())
    return save_checkpoint(ckpt, tmp_path / name)


def test_make_report_writes_consistent_files(tmp_path):
    path = _checkpoint(tmp_path)
    cfg = ReportConfig(checkpoint=str(path), steps=(1, 4), samples=40, batch_size=16,
                       relu_accuracy=0.9, energy_overrides={"cmos_ac_pj": 0.5})
    res = make_report(cfg, tmp_path / "rep")
    data = json.loads(res.json.read_text())
    assert data["config"]["budget_steps"] == 4 and data["error_budget"]["samples"] == 40
    assert data["error_budget"]["steps"] == [1, 4]
    assert data["error_budget"]["relu_ann"] == 0.9
    assert 0.0 <= data["error_budget"]["qcfs_ann"] <= 1.0
    for key in ("float_snn", "integer_snn"):
        assert set(data["error_budget"][key]) == {"1", "4"}
        assert 0.0 <= data["error_budget"][key]["4"] <= 1.0
        assert data["error_budget"][key] == data["accuracy"][key]
    assert set(data["accuracy"]["integer_snn"]) == {"1", "4"}
    ops = res.counts[4]
    assert data["counts"]["4"]["total"]["synops"] == ops.total("synops")
    # energy JSON follows from the counts and the overridden constant
    cmos = sum(la.synops * 0.5 + la.input_macs * 4.6 for la in ops.layers)
    assert data["energy"]["4"]["total_pj"]["cmos_snn"] == pytest.approx(cmos)
    assert [layer["name"] for layer in data["breakdown"]["4"]["layers"]] == ["2", "6"]
    assert [layer["layer"] for layer in data["breakdown"]["4"]["layers"]] == ["conv1", "conv2"]
    md = res.markdown.read_text()
    assert "\n| conv1 | " in md.split("## Conversion error per layer")[1]
    assert "T = 4: the largest T evaluated" in md
    assert "Error budget (T = 4)" in md and "estimates" in md and "Davies" in md
    for p in res.plots:
        assert p.is_file() and p.read_bytes()[:4] == b"\x89PNG"
        assert f"({p.name})" in md
    assert data["config"]["energy_overrides"] == {"cmos_ac_pj": 0.5}
    assert not list(res.out_dir.glob(".*tmp"))


def test_report_rejects_relu_checkpoint_and_bad_steps(tmp_path):
    path = _checkpoint(tmp_path, activation="relu")
    with pytest.raises(AnalysisError, match="QCFS"):
        make_report(ReportConfig(checkpoint=str(path), steps=(1,), samples=4), tmp_path / "r")
    with pytest.raises(AnalysisError, match="positive"):
        ReportConfig(checkpoint="x", steps=(0, 2))


@pytest.mark.lava
@pytest.mark.slow
def test_report_lava_subset_matches_emulator(tmp_path):
    pytest.importorskip("lava", reason="lava-nc is not installed")
    path = _checkpoint(tmp_path)
    cfg = ReportConfig(checkpoint=str(path), steps=(2,), samples=6, lava_samples=2)
    res = make_report(cfg, tmp_path / "rep")
    lava = res.data["error_budget"]["lava"]
    assert lava == res.budget.lava.to_dict()
    assert res.budget.lava.identical
    assert "skipped" not in lava, lava
    assert lava["samples"] == 2 and lava["mismatches"] == 0
    assert np.isclose(lava["accuracy"], lava["integer_snn_accuracy_same_subset"])


@pytest.mark.slow
def test_sweep_tiny_config_and_resume(tmp_path):
    from qcfs_lava.sweep import SweepConfig, run_sweep

    cfg = SweepConfig(dataset="digits", levels=(2,), shift_levels=2, steps=(1, 2), epochs=1,
                      width=2, samples=30, device="cpu")
    res = run_sweep(cfg, tmp_path / "sweep")
    data = res.data
    assert set(data["ann_accuracy"]) == {"relu", "cf-L2", "cfs-L2"}
    assert all(data["trained_now"].values())
    assert set(data["snn_levels_vs_steps"]["2"]) == {"1", "2"}
    for acc in data["snn_shift_vs_steps"]["clip_floor"].values():
        assert 0.0 <= acc <= 1.0
    assert len(res.plots) == 3 and all(p.is_file() for p in res.plots)
    assert "clip-floor-shift" in res.markdown.read_text()
    again = run_sweep(cfg, tmp_path / "sweep")
    assert not any(again.data["trained_now"].values())
    assert again.data["ann_accuracy"] == data["ann_accuracy"]


def test_report_command_takes_energy_constants_and_refuses_unknown_ones(tmp_path, capsys):
    from qcfs_lava.cli import main

    path = _checkpoint(tmp_path)
    out = tmp_path / "cli"
    rc = main(["report", str(path), "--steps", "1,2", "--samples", "8", "--batch-size", "8",
               "--energy-const", "cmos_ac_pj=0.1", "--out", str(out)])
    assert rc == 0
    assert "integer SNN" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert data["config"]["steps"] == [1, 2]
    consts = {c["name"]: c["value"] for c in data["energy"]["2"]["constants"]}
    assert consts["cmos_ac_pj"] == 0.1 and consts["cmos_mac_pj"] == 4.6
    rc = main(["report", str(path), "--energy-const", "bogus=1", "--out", str(out)])
    assert rc == 2
    assert "unknown energy constant" in capsys.readouterr().err


def test_emulate_json_and_report_json_carry_the_same_error_budget(tmp_path):
    from qcfs_lava.cli import main

    path = _checkpoint(tmp_path)
    res = make_report(ReportConfig(checkpoint=str(path), steps=(2, 4), samples=40,
                                   batch_size=16), tmp_path / "rep")
    emu_json = tmp_path / "emu.json"
    rc = main(["emulate", str(path), "--steps", "2,4", "--samples", "40", "--batch-size", "16",
               "--json", str(emu_json)])
    assert rc == 0
    from_emulate = json.loads(emu_json.read_text())["error_budget"]
    from_report = json.loads(res.json.read_text())["error_budget"]
    assert from_emulate == from_report
    assert set(from_report) == {"steps", "samples", "qcfs_ann", "relu_ann", "float_snn",
                                "integer_snn", "lava"}
    assert from_report["qcfs_ann"] is not None and from_report["float_snn"]["4"] is not None


EXAMPLE = Path(__file__).resolve().parents[2] / "netx_exports"


def test_report_takes_the_exported_files_steps(tmp_path):
    cfg = ReportConfig(checkpoint=str(EXAMPLE / "digits-cnn.pt"),
                       netx=str(EXAMPLE / "digits-cnn.net"), steps=(2, 4, 16), samples=30)
    assert cfg.budget_steps == 8 and cfg.steps == (2, 4, 8, 16)
    res = make_report(cfg, tmp_path / "rep")
    assert res.data["error_budget"]["steps"] == [2, 4, 8, 16]
    assert "T = 8: the T of the exported file" in res.markdown.read_text()
    # an explicit --budget-steps wins
    assert ReportConfig(checkpoint="x", netx=str(EXAMPLE / "digits-cnn.net"),
                        budget_steps=4).budget_steps == 4


def test_report_refuses_a_file_exported_from_another_checkpoint(tmp_path):
    path = _checkpoint(tmp_path)
    cfg = ReportConfig(checkpoint=str(path), netx=str(EXAMPLE / "digits-cnn.net"), samples=4)
    with pytest.raises(AnalysisError, match="exported from another checkpoint"):
        make_report(cfg, tmp_path / "rep")
    assert not (tmp_path / "rep").exists()


def test_every_plot_labels_both_axes(tmp_path, monkeypatch):
    """Axis labels (with units where there are any) on every axes of every report plot."""
    from qcfs_lava.analysis import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=120: figures.append(fig))
    names = ["conv1", "conv2"]
    plots.plot_accuracy_vs_steps(tmp_path / "a.png", [2, 4], 0.9, {2: 0.5, 4: 0.8},
                                 {2: 0.5, 4: 0.7}, {4: 0.75}, lava_samples=20)
    plots.plot_firing_rates(tmp_path / "f.png", {4: {"conv1": 0.1, "conv2": 0.2}})
    plots.plot_synops_energy(tmp_path / "s.png", names, [1, 2], [3, 4], [5, 6],
                             {"Loihi 1 (SNN)": [1e3, 2e3]}, 4)
    plots.plot_error_breakdown(tmp_path / "e.png", names, [0.1, 0.2], [0.0, 0.1], [0.1, 0.0], 4)
    plots.plot_sweep_lines(tmp_path / "w.png", [2, 4], {"L=4": {2: 0.5, 4: 0.6}},
                           "time steps T", "sweep")
    axes = [ax for fig in figures for ax in fig.axes]
    assert len(axes) == 6
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert "Lava simulator (20 samples)" in legend


@pytest.mark.slow
def test_demo_trains_exports_emulates_and_reports_and_reuses_its_run(tmp_path, capsys):
    from qcfs_lava.cli import main
    from qcfs_lava.demo import DemoConfig, run_demo
    from qcfs_lava.netx import read_netx

    config = DemoConfig(out=str(tmp_path / "demo"), export=str(tmp_path / "demo.net"),
                        epochs=1, steps=4, lava_samples=0)
    said: list[str] = []
    result = run_demo(config, say=said.append)
    assert not result.reused and result.lava_identical
    assert [s[:5] for s in said if s.startswith("[")] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]"]
    assert read_netx(config.export).metadata["steps"] == 4
    assert result.test_samples == len(load_dataset("digits").y_test)
    assert 0.0 <= result.file_accuracy <= 1.0
    summary = json.loads(result.summary.read_text())
    assert summary["config"]["epochs"] == 1 and summary["error_budget"]["steps"] == [
        1, 2, 4, 8, 16, 32]
    # the command reuses the finished run and prints the same budget
    assert main(["demo", "--out", config.out, "--export", config.export, "--steps", "4",
                 "--lava-samples", "0"]) == 0
    text = capsys.readouterr().out
    assert "reusing" in text and "error budget on" in text and "[5/5] summary" in text
