"""Lava still imports and runs after something else touched multiprocessing (tqdm does)."""

import subprocess
import sys

import pytest

from qcfs_lava.lava_sim.compat import patch_start_method_source

SCRIPT = """
import multiprocessing as mp
from tqdm.auto import tqdm
for _ in tqdm(range(2)):
    pass
mp.get_context()  # fixes the default context, as tqdm's lock does
from qcfs_lava.lava_sim import simulate
from qcfs_lava.network import IntegerNetwork, NeuronLayer, Synapse
import numpy as np
net = IntegerNetwork((2,), (
    NeuronLayer("h", (2,), (Synapse(-1, "dense", np.array([[2, 0], [0, 2]])),), 0,
                np.zeros(2), 1, 32),
    NeuronLayer("out", (2,), (Synapse(0, "dense", np.array([[2, 0], [0, 2]])),), 0,
                np.zeros(2), None),
), levels=4, phi=0.5)
res = simulate(net, np.array([[100, 0]], dtype=np.uint8), 3)
print("OK", res.predictions.tolist())
"""


def test_patch_rewrites_only_the_start_method_call():
    src = "import multiprocessing as mp\nmp.set_start_method('fork')\nx = 1\n"
    out = patch_start_method_source(src)
    assert "force=True" in out and "get_start_method(allow_none=True) == 'fork'" in out
    assert out.endswith("x = 1\n")


@pytest.mark.lava
def test_lava_runs_after_tqdm_touched_multiprocessing():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK [0]" in proc.stdout
