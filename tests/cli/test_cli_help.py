"""``--help``: every option has a help text and states its default; the environment too."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

import pytest

from qcfs_lava.cli import COMMANDS, ENVIRONMENT, build_parser

PACKAGE = Path(__file__).resolve().parents[2] / "qcfs_lava"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_and_states_its_default(command):
    parser = _subparsers()[command]
    formatter = parser._get_formatter()
    for action in _options(parser):
        assert action.help, f"{command} {action.option_strings[0]} has no help text"
        shown = formatter._get_help_string(action)
        if action.default not in (None, False, argparse.SUPPRESS) and not action.required:
            assert "default" in shown.lower(), f"{command} {action.option_strings[0]}: {shown}"
    parser.format_help()  # every help string expands


def test_stated_training_defaults_are_the_libraries():
    from qcfs_lava.sweep import SweepConfig
    from qcfs_lava.train import TrainConfig

    train_defaults = {f.name: f.default for f in fields(TrainConfig)}
    sweep_defaults = {f.name: f.default for f in fields(SweepConfig)}
    parsers = _subparsers()
    checked = 0
    for command, defaults, pattern in (("train", train_defaults, r"else ([\w.]+)\)$"),
                                       ("sweep", sweep_defaults, r"\(default ([\w.,]+)\)$")):
        for action in _options(parsers[command]):
            match = re.search(pattern, action.help)
            if match is None or action.dest not in defaults:
                continue
            want = defaults[action.dest]
            want = ",".join(map(str, want)) if isinstance(want, tuple) else str(want)
            assert match.group(1) == want, (command, action.dest, action.help)
            checked += 1
    assert checked >= 14


def test_evaluate_and_report_sweep_the_same_steps_by_default():
    parsers = _subparsers()
    steps = {name: next(a.default for a in _options(parsers[name]) if a.dest == "steps")
             for name in ("evaluate", "report")}
    assert tuple(steps["evaluate"]) == tuple(steps["report"]) == (1, 2, 4, 8, 16, 32)


def test_top_level_help_lists_every_environment_variable_the_library_reads():
    used = {m for path in PACKAGE.rglob("*.py")
            for m in re.findall(r"QCFS_LAVA_[A-Z0-9_]+", path.read_text())}
    assert used == set(ENVIRONMENT)
    text = build_parser().format_help()
    for name in used:
        assert name in text
