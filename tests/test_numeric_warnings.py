"""No numpy RuntimeWarning around results.

Absurd but finite parameters (weights of 1e308) used to run with overflow and invalid-value
warnings and print garbage accuracies; now the reference executor and ``run-nir`` refuse them
with a typed error. The suite also turns any RuntimeWarning raised from qcfs_lava's own code
into an error (``pyproject.toml``), so every other test checks the rest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from qcfs_lava.cli import main
from qcfs_lava.errors import NirError

nir = pytest.importorskip("nir", reason="the NIR tests need the [nir] extra")

from qcfs_lava.nir_exchange.executor import run_nir  # noqa: E402
from qcfs_lava.nir_exchange.semantics import read_nir, write_nir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CKPT = ROOT / "netx_exports" / "digits-cnn.pt"


@pytest.fixture()
def huge_graph(tmp_path):
    from qcfs_lava.nir_exchange.export import export_checkpoint

    export_checkpoint(EXAMPLE_CKPT, tmp_path / "ok.nir", steps=2)
    graph = read_nir(tmp_path / "ok.nir")
    for node in graph.nodes.values():
        if isinstance(node, (nir.Conv2d, nir.Affine)):
            node.weight = np.full(node.weight.shape, 1e308)  # finite; any sum of two is not
    return graph


def test_overflowing_parameters_are_a_typed_error_without_warnings(huge_graph):
    x = np.full((2, 1, 8, 8), 200, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(NirError, match="overflow|range"):
            run_nir(huge_graph, x)


@pytest.mark.parametrize("runner", ["reference", "import"])
def test_run_nir_on_overflowing_parameters_exits_2_quietly(huge_graph, tmp_path, capsys, runner):
    path = write_nir(huge_graph, tmp_path / "huge.nir")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["run-nir", str(path), "--samples", "4", "--runner", runner])
    err = capsys.readouterr().err
    assert rc == 2 and "overflow" in err, err
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
