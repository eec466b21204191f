"""Test helpers: random integer networks and a slow, obviously-correct reference simulator."""

from __future__ import annotations

import numpy as np

from qcfs_lava import hardware as hw
from qcfs_lava.network import INPUT, IntegerNetwork, NeuronLayer, Synapse


def rand_weight(rng, shape, wmax=254):
    q = rng.integers(-(wmax // 2), wmax // 2 + 1, size=shape)
    return 2 * q


def random_network(rng, *, conv: bool, residual: bool = False, steps_hint: int = 4,
                   extreme: bool = False, payload: int = 1) -> IntegerNetwork:
    """A small random network. ``extreme`` picks exponents/biases that saturate; ``payload``
    is the hidden layers' payload bound (1: binary spikes)."""
    layers = []

    def neuron(name, shape, syns, spiking=True):
        e = int(rng.integers(hw.WEIGHT_EXP_MIN, hw.WEIGHT_EXP_MAX + 1)) if extreme else \
            int(rng.integers(-2, 6))
        c = shape[0]
        bias = rng.integers(-4096 if extreme else -300, 4096 if extreme else 300, size=c)
        vth = int(rng.integers(1, 2000 if not extreme else hw.VTH_MANT_MAX + 1))
        return NeuronLayer(name, shape, tuple(syns), e, bias,
                           vth if spiking else None,
                           (vth << 5) if spiking else int(rng.integers(-1000, 1000)),
                           payload=payload if spiking else 1)

    if conv:
        in_shape = (2, 7, 6)
        s1 = Synapse(INPUT, "conv", rand_weight(rng, (4, 2, 3, 3), 40), stride=(1, 2),
                     padding=(1, 1))
        layers.append(neuron("c1", (4, 7, 3), [s1]))
        s2 = Synapse(0, "conv", rand_weight(rng, (4, 2, 3, 1)), padding=(1, 0), groups=2,
                     dilation=(1, 1))
        syns = [s2]
        if residual:
            syns.append(Synapse(INPUT, "conv", rand_weight(rng, (4, 2, 1, 1), 20), stride=(1, 2)))
            syns.append(Synapse(0, "conv", rand_weight(rng, (4, 1, 1, 1)), groups=4))
        layers.append(neuron("c2", (4, 7, 3), syns))
        layers.append(neuron("out", (5,), [Synapse(1, "dense", rand_weight(rng, (5, 84)))],
                             spiking=False))
    else:
        in_shape = (12,)
        layers.append(neuron("d1", (9,), [Synapse(INPUT, "dense", rand_weight(rng, (9, 12), 60))]))
        syns = [Synapse(0, "dense", rand_weight(rng, (7, 9)))]
        if residual:
            syns.append(Synapse(INPUT, "dense", rand_weight(rng, (7, 12), 10)))
        layers.append(neuron("d2", (7,), syns))
        layers.append(neuron("out", (3,), [Synapse(1, "dense", rand_weight(rng, (3, 7)))],
                             spiking=False))
    return IntegerNetwork(in_shape, tuple(layers), levels=4, phi=0.5)


def _conv_ref(x, w, stride, padding, dilation, groups):
    """Direct int64 convolution, torch semantics (cross-correlation), one sample (C, H, W)."""
    c, h, wd = x.shape
    co, cig, kh, kw = w.shape
    xp = np.zeros((c, h + 2 * padding[0], wd + 2 * padding[1]), dtype=np.int64)
    xp[:, padding[0]:padding[0] + h, padding[1]:padding[1] + wd] = x
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((co, oh, ow), dtype=np.int64)
    cog = co // groups
    for o in range(co):
        g = o // cog
        for i in range(oh):
            for j in range(ow):
                total = 0
                for ci in range(cig):
                    for dy in range(kh):
                        for dx in range(kw):
                            total += int(w[o, ci, dy, dx]) * int(
                                xp[g * cig + ci, i * stride[0] + dy * dilation[0],
                                   j * stride[1] + dx * dilation[1]])
                out[o, i, j] = total
    return out


def reference_run(net: IntegerNetwork, x: np.ndarray, steps: int):
    """The integer dynamics (docs/contract.md, section 3), written plainly: one sample at a
    time, numpy int64.

    Returns (potentials (N, classes), spikes: list per hidden layer of (N, T, *shape), bool
    for binary layers, int64 payloads for graded ones).
    """
    n = x.shape[0]
    pots = np.zeros((n, net.num_classes), dtype=np.int64)
    trains = [np.zeros((n, steps, *lay.shape), dtype=bool if lay.payload == 1 else np.int64)
              for lay in net.layers[:-1]]
    for k in range(n):
        img = x[k].astype(np.int64)
        v = [np.full(lay.shape, lay.v_init, dtype=np.int64) for lay in net.layers]
        for t in range(steps):
            s_out = []
            for li, lay in enumerate(net.layers):
                acc = np.zeros(lay.shape, dtype=np.int64)
                for syn in lay.synapses:
                    src = img if syn.source == INPUT else s_out[syn.source].astype(np.int64)
                    if syn.kind == "dense":
                        acc += (syn.weight @ src.reshape(-1)).reshape(lay.shape)
                    else:
                        acc += _conv_ref(src, syn.weight, syn.stride, syn.padding,
                                         syn.dilation, syn.groups)
                e = lay.weight_exp
                a = acc << e if e >= 0 else acc >> -e  # arithmetic shift = floor
                vl = np.clip(v[li] + a + lay.bias, net.ranges.state_min, net.ranges.state_max)
                if lay.spiking:
                    if lay.payload == 1:
                        s = vl >= lay.v_th
                    else:  # graded: floor division of int64 is the plain floor
                        s = np.minimum(lay.payload, np.maximum(0, vl // lay.v_th))
                    vl = vl - s * lay.v_th
                    trains[li][k, t] = s
                    s_out.append(s)
                v[li] = vl
        pots[k] = (v[-1] - net.layers[-1].v_init).reshape(-1)
    return pots, trains


def conv_taps(syn: Synapse, out_shape):
    """Every ``(c_out, oy, ox, iy, ix)`` of a conv synapse: output neuron and the input
    position each kernel tap reads (possibly outside the input, in the padding); a plain loop,
    the reference the fast counts are checked against."""
    c_out, h_out, w_out = out_shape
    kh, kw = syn.weight.shape[2:]
    for co in range(c_out):
        for oy in range(h_out):
            for ox in range(w_out):
                for ky in range(kh):
                    for kx in range(kw):
                        yield (co, oy, ox,
                               oy * syn.stride[0] - syn.padding[0] + ky * syn.dilation[0],
                               ox * syn.stride[1] - syn.padding[1] + kx * syn.dilation[1])
