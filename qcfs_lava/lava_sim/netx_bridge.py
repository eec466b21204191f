"""lava-dl's own NetX reader, with qcfs-lava's neuron plugged in.

lava-dl 0.6.0 builds networks from NetX files through ``lava.lib.dl.netx.hdf5.Network``, whose
static ``get_neuron_params`` knows only lava's neurons (CUBA/LIF, Sigma-Delta, RF): on our
``QCFS_IF`` neuron it fails with ``AttributeError: 'NoneType' object has no attribute 'pop'``.
After :func:`register_qcfs_neuron` (or within :func:`qcfs_neurons_in_lava_dl`), neuron groups
of type ``QCFS_IF`` build our :class:`~.procs.neuron.QcfsNeuron` /
:class:`~.procs.neuron.QcfsOutput` instead, so the blocks lava-dl wires (its own Dense/Conv
synapses, flatten, input) carry our dynamics. Nothing installed is edited.

The public entry points: :func:`build_lava_dl_network` (lava-dl's ``hdf5.Network`` of one of
our sequential files), :func:`run_lava_dl_network` (stream samples through it) and
:func:`register_qcfs_neuron` (for code that calls ``hdf5.Network`` itself). Residual files
have ``concat`` layers, which lava-dl 0.6.0 does not implement.

lava-dl's Dense block rescales weights by ``2**k`` and gives its synapse ``weight_exp = -k``
(``optimize_weight_bits``), which returns exactly ``sum(w * s)``; our neuron then applies the
layer's exponent, as in :mod:`qcfs_lava.lava_sim.runner`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np

from qcfs_lava import hardware as hw
from qcfs_lava.lava_sim.compat import ensure_lava_dl
from qcfs_lava.network import IntegerNetwork


def _make_neuron(*, shape, vth_mant, v_init, weight_exp, steps, offset, num_samples,
                 bias_mant=None):
    from qcfs_lava.lava_sim.procs.neuron import QcfsNeuron, QcfsOutput

    bias = np.zeros(shape, dtype=np.int64) if bias_mant is None else np.asarray(bias_mant)
    bias = hw.bias_from_mant(bias.astype(np.int64))
    common = dict(shape=shape, v_init=v_init, weight_exp=weight_exp, bias=bias, steps=steps,
                  offset=offset, num_samples=num_samples)
    if vth_mant is None:
        return QcfsOutput(**common)
    return QcfsNeuron(vth=hw.vth_from_mant(vth_mant), **common)


def register_qcfs_neuron(num_samples: int = 1, steps: int | None = None) -> None:
    """Teach lava-dl's NetX reader the ``QCFS_IF`` neuron, until :func:`unregister_qcfs_neuron`.

    After this call the stock reader builds our sequential files, e.g.
    ``lava.lib.dl.netx.hdf5.Network(net_config="netx_exports/digits-cnn.net",
    input_message_bits=8, reset_interval=8)``: neuron groups of type ``QCFS_IF`` become our
    :class:`~.procs.neuron.QcfsNeuron` / :class:`~.procs.neuron.QcfsOutput`, every other
    neuron type is built by lava-dl as before. Nothing installed is edited: the reader's
    static ``get_neuron_params`` is replaced in this process only. Calling it again replaces
    the settings.

    lava-dl gives block ``i`` the reset offset ``i + 1``; its input arrives one synapse
    later, so our neuron's window starts at ``reset_offset + 1`` (the same time step the
    qcfs-lava runner uses for that layer).

    Args:
        num_samples: samples the neurons will see (sizes their records; a neuron is idle
            after ``num_samples * T`` steps).
        steps: the reset interval ``T``; None takes the ``reset_interval`` given to
            ``hdf5.Network``, which is then required.
    """
    ensure_lava_dl()
    from lava.lib.dl.netx import hdf5

    from qcfs_lava.errors import NetworkValidationError
    from qcfs_lava.netx import neuron_from_group

    stock = _STOCK.setdefault("get_neuron_params", hdf5.Network.__dict__["get_neuron_params"])

    def get_neuron_params(neuron_config, input=False, reset_interval=None, reset_offset=0,
                          spike_exp=6):
        ours = neuron_from_group(neuron_config)
        if ours is None:
            return stock.__func__(neuron_config, input=input, reset_interval=reset_interval,
                                  reset_offset=reset_offset, spike_exp=spike_exp)
        t = steps if steps is not None else reset_interval
        if t is None:
            raise NetworkValidationError(
                "lava-dl's reader met a QCFS_IF neuron without a reset interval: pass "
                "reset_interval=T (the time steps per sample) to hdf5.Network, or steps=T to "
                "register_qcfs_neuron")
        params = {"neuron_proc": _make_neuron, "bias_key": "bias_mant",
                  "num_message_bits": 0, "steps": int(t), "offset": int(reset_offset) + 1,
                  "num_samples": int(num_samples)}
        params.update(ours)
        return params

    hdf5.Network.get_neuron_params = staticmethod(get_neuron_params)


def unregister_qcfs_neuron() -> None:
    """Give lava-dl's reader back its stock ``get_neuron_params`` (no-op if not registered)."""
    stock = _STOCK.pop("get_neuron_params", None)
    if stock is not None:
        from lava.lib.dl.netx import hdf5

        hdf5.Network.get_neuron_params = stock


# lava-dl's own get_neuron_params while ours is registered
_STOCK: dict[str, object] = {}


@contextlib.contextmanager
def qcfs_neurons_in_lava_dl(steps: int = 1, num_samples: int = 1) -> Iterator[None]:
    """Within this block, lava-dl's NetX reader builds QCFS_IF neurons as ours.

    :func:`register_qcfs_neuron` for the block only; lava-dl's reader is stock again after it
    (or as it was, if ours was registered before).

    Args:
        steps: the reset interval ``T`` given to every neuron.
        num_samples: samples the neurons will see (sizes their records).
    """
    ensure_lava_dl()
    from lava.lib.dl.netx import hdf5

    before = hdf5.Network.__dict__["get_neuron_params"]
    was_registered = "get_neuron_params" in _STOCK
    register_qcfs_neuron(num_samples=num_samples, steps=steps)
    try:
        yield
    finally:
        if was_registered:
            hdf5.Network.get_neuron_params = before
        else:
            unregister_qcfs_neuron()


def build_lava_dl_network(path: str | os.PathLike, steps: int | None = None,
                          num_samples: int = 1):
    """``lava.lib.dl.netx.hdf5.Network`` of a sequential qcfs-lava NetX file, our neurons in.

    The public way to run our files with lava-dl's network classes: lava-dl's reader wires
    its own blocks (input, Dense/Conv synapses, flatten) and :func:`qcfs_neurons_in_lava_dl`
    supplies the neuron. lava-dl resets every layer every ``steps`` time steps
    (``reset_interval``). The input is graded 8-bit pixels (``input_message_bits=8``).
    Residual files cannot be built this way (lava-dl 0.6.0 does not implement their
    ``concat`` layers): run them with :func:`qcfs_lava.lava_sim.simulate`.

    Args:
        path: a sequential qcfs-lava NetX file.
        steps: time steps ``T`` per sample; None takes the T recorded in the file (its
            ``steps`` metadata), else 8.
        num_samples: samples the network will see (sizes the neurons' records).

    Raises:
        NetworkValidationError: ``path`` has merge (residual) layers.
    """
    from qcfs_lava.errors import NetworkValidationError
    from qcfs_lava.netx import is_lava_dl_sequential, read_netx

    net = read_netx(path)
    if not is_lava_dl_sequential(net):
        raise NetworkValidationError(
            f"{path}: has residual (merge) layers, written as NetX 'concat', which lava-dl "
            "0.6.0 does not implement; run it with qcfs_lava.lava_sim.simulate or "
            "`qcfs-lava simulate`")
    if steps is None:
        steps = int(net.metadata.get("steps", 8))
    with qcfs_neurons_in_lava_dl(steps, num_samples):
        from lava.lib.dl.netx import hdf5

        return hdf5.Network(net_config=str(path), input_message_bits=8,
                            reset_interval=int(steps))


def run_lava_dl_network(path: str | os.PathLike, x: np.ndarray, steps: int) -> np.ndarray:
    """Stream ``x`` through the network lava-dl builds from ``path``; output potentials.

    Args:
        path: a sequential qcfs-lava NetX file.
        x: uint8 samples in torch layout. Shape: ``(N, *input_shape)``.
        steps: time steps ``T`` per sample.

    Returns:
        ``(N, num_classes)`` int64: the output layer's ``v(T) - v_init`` per sample.
    """
    from lava.magma.core.run_conditions import RunSteps

    from qcfs_lava.lava_sim.procs.io import SampleInput
    from qcfs_lava.lava_sim.runner import from_lava_flat, run_config, to_lava
    from qcfs_lava.netx import read_netx

    net = read_netx(path)
    x = np.asarray(x)
    lava_net = build_lava_dl_network(path, steps, num_samples=len(x))
    source = SampleInput(data=to_lava(x, net.input_shape), steps=steps)
    source.s_out.connect(lava_net.inp)
    out = lava_net.layers[-1].neuron
    cfg = run_config()
    lava_net.run(condition=RunSteps(num_steps=len(x) * steps + len(net.layers)), run_cfg=cfg)
    try:
        pots = np.asarray(out.potentials.get()).reshape(len(x), -1)
    finally:
        lava_net.stop()
    return from_lava_flat(pots, net.output.shape).reshape(len(x), -1).astype(np.int64)


def lava_dl_layer_table(net: IntegerNetwork) -> str:
    """The layer table lava-dl prints (``str(hdf5.Network)``), computed from ``net``."""
    ensure_lava_dl()
    from lava.lib.dl.netx import hdf5

    rows = [hdf5.Network._table_str(header=True)]
    for layer in net.layers:
        syn = layer.synapses[0]
        if syn.kind == "dense":
            rows.append(hdf5.Network._table_str(type_str="Dense", width=1, height=1,
                                                channel=layer.shape[0]))
        else:
            c, h, w = layer.shape
            rev = (lambda v: np.array(v[::-1]))  # noqa: E731 - lava-dl prints (x, y)
            rows.append(hdf5.Network._table_str(
                type_str="Conv", width=w, height=h, channel=c,
                kernel=rev(syn.kernel_size), stride=rev(syn.stride),
                padding=rev(syn.padding), dilation=rev(syn.dilation),
                groups=np.array(syn.groups)))
    return "\n".join(rows)
