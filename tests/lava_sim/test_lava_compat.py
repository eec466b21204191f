"""lava-nc / lava-dl import and simulate on this Python (3.11+ through the compat layer)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from qcfs_lava.lava_sim.compat import patch_var_model_source

BROKEN = '''from __future__ import annotations

import typing as ty
from dataclasses import dataclass, InitVar


@dataclass
class ByteEncoder:
    base: int = 0


@dataclass
class CoreEncoder:
    x: ByteEncoder = ByteEncoder()
    y: ByteEncoder = ByteEncoder()
'''


def test_patch_makes_dataclass_valid_and_defaults_independent():
    patched = patch_var_model_source(BROKEN)
    assert "ByteEncoder()" not in patched
    assert patched.startswith("from __future__ import annotations")
    ns: dict = {}
    exec(compile(patched, "<var_model>", "exec"), ns)  # noqa: S102 - our own test source
    a, b = ns["CoreEncoder"](), ns["CoreEncoder"]()
    assert a.x == ns["ByteEncoder"]() and a.x is not b.x
    assert patch_var_model_source("x = 1\n") == "x = 1\n"


def test_import_qcfs_lava_does_not_import_lava_or_torch():
    code = ("import sys, qcfs_lava, qcfs_lava.network, qcfs_lava.results; "
            "print(sorted(m for m in ('lava', 'torch', 'qcfs_lava.lava_sim') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_ensure_lava_is_idempotent():
    from qcfs_lava.lava_sim import compat

    compat.ensure_lava()
    compat.install_finder()
    assert sum(isinstance(f, compat.LavaCompatFinder) for f in sys.meta_path) == 1
    import lava.magma.compiler.var_model as vm

    assert vm.CoreEncoder().x is not vm.CoreEncoder().x


def _lif_reference(weights, spikes, steps, vth, du, dv, bias_mant, bias_exp):
    """Lava's bit-accurate LIF (lava/proc/lif/models.py), by hand, with Dense latency 1."""
    n = weights.shape[0]
    u = np.zeros(n, dtype=np.int64)
    v = np.zeros(n, dtype=np.int64)
    out_v, out_s = [], []
    lim = 1 << 23

    def decay(x, d):
        y = x * (4096 - d)
        return np.sign(y) * (np.abs(y) >> 12)

    for t in range(steps):
        a_in = weights @ spikes[:, t - 1] if t >= 1 else np.zeros(n, dtype=np.int64)
        u = decay(u, du + 1) + (a_in << 6)
        u = np.where(u > lim, u - 2 * lim, u)
        u = np.where(u <= -lim, u + 2 * lim, u)
        v = np.clip(decay(v, dv) + u + (bias_mant << bias_exp), -lim + 1, lim - 1)
        s = v > (vth << 6)
        v[s] = 0
        out_v.append(v.copy())
        out_s.append(s)
    return np.array(out_v), np.array(out_s)


@pytest.mark.lava
def test_dense_lif_fixed_pt_matches_hand_computation():
    from qcfs_lava.lava_sim import ensure_lava

    ensure_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    rng = np.random.default_rng(3)
    steps = 8
    spikes = rng.integers(0, 2, size=(4, steps))
    weights = 2 * rng.integers(-30, 30, size=(3, 4))  # mixed-sign Dense keeps even weights
    params = dict(vth=40, du=1024, dv=300, bias_mant=np.array([5, -3, 0]), bias_exp=4)
    src = Source(data=spikes)
    dense = Dense(weights=weights)
    lif = LIF(shape=(3,), **params)
    sink = Sink(shape=(3,), buffer=steps)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    mon = Monitor()
    mon.probe(lif.v, steps)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        v = mon.get_data()[lif.name]["v"]
        s = sink.data.get()
    finally:
        lif.stop()
    want_v, want_s = _lif_reference(weights, spikes, steps, **params)
    np.testing.assert_array_equal(v, want_v)
    np.testing.assert_array_equal(s.T.astype(bool), want_s)
    assert want_s.any() and (want_v != 0).any()


def _write_cuba_netx(path, w1, w2):
    import h5py

    def neuron(group):
        g = group.create_group("neuron")
        g.create_dataset("type", data=np.bytes_("CUBA"))
        for key, value in (("iDecay", 4096), ("vDecay", 0), ("vThMant", 80), ("refDelay", 1)):
            g.create_dataset(key, data=value)
        g.create_dataset("gradedSpike", data=False)

    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        for i, w in enumerate((w1, w2)):
            g = layers.create_group(str(i))
            g.create_dataset("type", data=np.bytes_("dense"))
            g.create_dataset("shape", data=np.array([w.shape[0]]))
            g.create_dataset("weight", data=w)
            neuron(g)


@pytest.mark.lava
@pytest.mark.slow
def test_netx_loads_a_cuba_file(tmp_path):
    from qcfs_lava.lava_sim import ensure_lava

    ensure_lava()
    from lava.lib.dl import netx

    rng = np.random.default_rng(0)
    w1 = 2 * rng.integers(-100, 100, size=(6, 5))
    w2 = 2 * rng.integers(-100, 100, size=(3, 6))
    path = tmp_path / "cuba.net"
    _write_cuba_netx(path, w1, w2)
    net = netx.hdf5.Network(net_config=str(path))
    assert len(net) == 2
    assert net.inp.shape == (5,) and net.out.shape == (3,)
    dense = net.layers[0].synapse
    # netx re-scales weights (weight bits + exponent) but keeps their value
    exp = dense.proc_params["weight_exp"]
    np.testing.assert_array_equal(dense.weights.init.astype(np.int64) * 2.0 ** exp, w1)
