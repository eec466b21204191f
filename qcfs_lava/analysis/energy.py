"""Energy *estimates* from operation counts (``docs/contract.md``, section 5).

These are first-order estimates: operation counts (:mod:`qcfs_lava.analysis.counts`) times
per-operation energies published for two reference technologies. They are not measurements.

Loihi 1 (Davies et al., IEEE Micro 2018, Table 2), per sample and layer ``l``::

    E_loihi1 = e_synop * (SynOps_l + inputMACs_l)
             + e_active * active_updates_l + e_inactive * (neuron_updates_l - active_updates_l)
             + (e_spike + hops_per_spike * e_hop) * spikes_l

The graded input is delivered as one synaptic event per (pixel, synapse) per step, so the
first layer's MACs are charged as synaptic ops there. A neuron update is *active* when the
neuron fires in that step. ``hops_per_spike`` depends on the placement of layers on cores,
which is unknown here: it defaults to 0 (all traffic within a tile); set it to model routing.

45 nm CMOS (Horowitz, ISSCC 2014), the usual SNN-vs-ANN comparison::

    E_snn = e_ac * (SynOps - gradedEvents) + e_graded * gradedEvents + e_mac * inputMACs
    E_ann = e_mac * ANN_MACs

Graded spikes (a source layer with payload bound ``P > 1``, Loihi 2 only): a message carries
an integer payload that the synapse multiplies by its weight. In the 45 nm comparison such a
*graded synaptic event* is a multiply-accumulate (``e_graded``, by default the same 32-bit
MAC as the ANN's, 4.6 pJ: conservative, as the payload is at most a few bits wide; a
``P``-bit by 8-bit integer MAC costs far less, Horowitz's 8-bit integer multiply is 0.2 pJ).
On the neuromorphic side, Loihi 1 has binary spikes only, and Loihi 2's energy per graded
synaptic event, per message or per neuron update is **not public**: the Loihi column of a
graded network charges each event Loihi 1's synaptic-op energy (one event per message and
synapse, whatever the payload), each message Loihi 1's spike energy, and says so
(:attr:`EnergyEstimate.note`). Payload-weighted ops (what binary spikes would need to send the
same values) are counted separately (:mod:`qcfs_lava.analysis.counts`).

Loihi 2 has no public per-operation table. The one measured reference point we quote (never
model) is lava-dl's PilotNet SNN benchmark on one Loihi 2 chip: about 1.09 mJ of dynamic
energy per inference (a different network; for orientation only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace

from qcfs_lava.analysis.counts import OpCounts
from qcfs_lava.errors import AnalysisError

__all__ = [
    "ESTIMATE_LABEL",
    "EnergyConstants",
    "EnergyEstimate",
    "LayerEnergy",
    "estimate_energy",
    "format_constants",
    "format_energy_table",
]

ESTIMATE_LABEL = (
    "Energy figures are estimates: operation counts times published per-operation energies "
    "(constants and sources below), not measurements."
)

_DAVIES = "Davies et al., 'Loihi: a neuromorphic manycore processor', IEEE Micro 38(1), 2018, " \
    "Table 2"
_HOROWITZ = "Horowitz, 'Computing's energy problem', ISSCC 2014 (45 nm, 32-bit float)"


def _const(value: float, unit: str, source: str):
    return field(default=value, metadata={"unit": unit, "source": source})


@dataclass(frozen=True)
class EnergyConstants:
    """Per-operation energies, each with its unit and source (``fields(...)[i].metadata``).

    Override with :meth:`with_overrides` (``name=value`` strings, as given to the CLI's
    ``--energy-const``) or :meth:`from_json`.
    """

    loihi1_synop_pj: float = _const(23.6, "pJ", f"{_DAVIES}: synaptic spike op (min)")
    loihi1_neuron_active_pj: float = _const(81.0, "pJ", f"{_DAVIES}: neuron update, active")
    loihi1_neuron_inactive_pj: float = _const(
        52.0, "pJ", f"{_DAVIES}: neuron update, inactive"
    )
    loihi1_spike_pj: float = _const(1.7, "pJ", f"{_DAVIES}: within-tile spike energy")
    loihi1_hop_pj: float = _const(3.5, "pJ", f"{_DAVIES}: across-tile spike energy per hop")
    loihi1_hops_per_spike: float = _const(
        0.0, "hops", "assumption: placement unknown, all spikes stay within a tile"
    )
    cmos_ac_pj: float = _const(0.9, "pJ", f"{_HOROWITZ}: add (one SynOp)")
    cmos_mac_pj: float = _const(4.6, "pJ", f"{_HOROWITZ}: multiply 3.7 + add 0.9 (one MAC)")
    cmos_graded_mac_pj: float = _const(
        4.6, "pJ", f"{_HOROWITZ}: one graded synaptic event as a 32-bit MAC (multiply 3.7 + "
        "add 0.9; conservative for payloads of a few bits)")
    loihi2_pilotnet_mj: float = _const(
        1.09,
        "mJ/inference",
        "lava-dl PilotNet SNN benchmark, one Loihi 2 chip, dynamic energy (quoted, not modelled)",
    )

    def with_overrides(self, overrides: Mapping[str, float] | Iterable[str]) -> EnergyConstants:
        """A copy with some constants replaced.

        Args:
            overrides: ``{"name": value}`` or strings ``"name=value"``.

        Raises:
            AnalysisError: an unknown name or a value that is not a finite number >= 0.
        """
        if not isinstance(overrides, Mapping):
            pairs = {}
            for item in overrides:
                name, sep, value = str(item).partition("=")
                if not sep:
                    raise AnalysisError(
                        f"energy constant override {item!r} is not of the form name=value"
                    )
                pairs[name.strip()] = value.strip()
            overrides = pairs
        known = {f.name for f in fields(self)}
        clean = {}
        for name, value in overrides.items():
            if name not in known:
                raise AnalysisError(
                    f"unknown energy constant {name!r}; known: {', '.join(sorted(known))}"
                )
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise AnalysisError(
                    f"energy constant {name}: {value!r} is not a number"
                ) from None
            if not number >= 0 or number == float("inf"):
                raise AnalysisError(f"energy constant {name}: {value!r} must be finite and >= 0")
            clean[name] = number
        return replace(self, **clean)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> EnergyConstants:
        """Defaults overridden by a JSON object ``{"name": value, ...}`` in ``path``."""
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise AnalysisError(f"cannot read energy constants from {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise AnalysisError(f"{path}: energy constants must be a JSON object name -> value")
        return cls().with_overrides(data)

    def table(self) -> list[dict]:
        """One row per constant: name, value, unit, source."""
        return [
            {
                "name": f.name,
                "value": getattr(self, f.name),
                "unit": f.metadata["unit"],
                "source": f.metadata["source"],
            }
            for f in fields(self)
        ]

    def to_dict(self) -> dict:
        return asdict(self)


def format_constants(constants: EnergyConstants) -> str:
    """The constants as a Markdown table with units and sources."""
    default = EnergyConstants()
    lines = ["| constant | value | unit | source |", "|---|---:|---|---|"]
    for row in constants.table():
        mark = "" if row["value"] == getattr(default, row["name"]) else " (overridden)"
        lines.append(
            f"| `{row['name']}` | {row['value']:g}{mark} | {row['unit']} | {row['source']} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class LayerEnergy:
    """Estimated energy of one layer, summed over the samples, in pJ."""

    name: str
    loihi1_pj: float
    cmos_snn_pj: float
    cmos_ann_pj: float


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy estimates of a run, per layer and in total (labelled as estimates).

    Attributes:
        num_samples: samples the counts were taken over.
        layers: per-layer estimates (pJ, all samples).
        constants: the constants used.
        label: states that these are estimates.
    """

    num_samples: int
    layers: tuple[LayerEnergy, ...]
    constants: EnergyConstants
    label: str = ESTIMATE_LABEL
    note: str = ""

    def total_pj(self, kind: str) -> float:
        """Total over layers and samples; ``kind`` is ``loihi1``, ``cmos_snn`` or ``cmos_ann``."""
        key = f"{kind}_pj"
        if key not in ("loihi1_pj", "cmos_snn_pj", "cmos_ann_pj"):
            raise AnalysisError(f"unknown energy kind {kind!r}; use loihi1, cmos_snn or cmos_ann")
        return float(sum(getattr(layer, key) for layer in self.layers))

    def per_sample_uj(self, kind: str) -> float:
        """Mean per sample, in microjoules."""
        return self.total_pj(kind) / max(self.num_samples, 1) * 1e-6

    def to_dict(self) -> dict:
        n = max(self.num_samples, 1)
        kinds = ("loihi1", "cmos_snn", "cmos_ann")
        return {
            "label": self.label,
            "samples": self.num_samples,
            "per_sample_uj": {k: self.per_sample_uj(k) for k in kinds},
            "total_pj": {k: self.total_pj(k) for k in kinds},
            "layers": [
                {**asdict(layer), "per_sample_pj": {
                    k: getattr(layer, f"{k}_pj") / n for k in kinds
                }}
                for layer in self.layers
            ],
            "loihi2_reference": {
                "value_mj": self.constants.loihi2_pilotnet_mj,
                "note": "quoted for orientation (a different network), not modelled",
            },
            "constants": self.constants.table(),
            **({"note": self.note} if self.note else {}),
        }


def estimate_energy(ops: OpCounts, constants: EnergyConstants | None = None) -> EnergyEstimate:
    """Estimate energy from operation counts (formulas in the module docstring).

    Args:
        ops: counts from :func:`~qcfs_lava.analysis.counts.count_ops`.
        constants: per-operation energies; the published defaults when ``None``.

    Returns:
        Per-layer and total estimates, in pJ summed over the samples of ``ops``.
    """
    c = constants or EnergyConstants()
    per_spike = c.loihi1_spike_pj + c.loihi1_hops_per_spike * c.loihi1_hop_pj
    rows = []
    graded = any(layer.graded_events for layer in ops.layers)
    for layer in ops.layers:
        binary_events = layer.synops - layer.graded_events
        loihi = (
            c.loihi1_synop_pj * (layer.synops + layer.input_macs)
            + c.loihi1_neuron_active_pj * layer.active_updates
            + c.loihi1_neuron_inactive_pj * layer.inactive_updates
            + per_spike * layer.spikes
        )
        rows.append(
            LayerEnergy(
                name=layer.name,
                loihi1_pj=float(loihi),
                cmos_snn_pj=float(c.cmos_ac_pj * binary_events
                                  + c.cmos_graded_mac_pj * layer.graded_events
                                  + c.cmos_mac_pj * layer.input_macs),
                cmos_ann_pj=float(c.cmos_mac_pj * layer.ann_macs),
            )
        )
    note = GRADED_NOTE if graded else ""
    return EnergyEstimate(num_samples=ops.num_samples, layers=tuple(rows), constants=c,
                          note=note)


GRADED_NOTE = (
    "Graded spikes: Loihi 1 sends binary spikes only and Loihi 2's energy per graded "
    "synaptic event is not public; the Loihi column charges each graded event (message x "
    "synapse) Loihi 1's synaptic-op energy, and the 45 nm column charges it one MAC."
)


def format_energy_table(energy: EnergyEstimate) -> str:
    """Per-layer energy per sample as a Markdown table (nJ), with a total row."""
    n = max(energy.num_samples, 1)
    lines = [
        "| layer | Loihi 1 (nJ) | 45 nm SNN (nJ) | 45 nm ANN (nJ) |",
        "|---|---:|---:|---:|",
    ]
    for layer in energy.layers:
        lines.append(
            f"| {layer.name} | {layer.loihi1_pj / n / 1e3:.3f} | "
            f"{layer.cmos_snn_pj / n / 1e3:.3f} | {layer.cmos_ann_pj / n / 1e3:.3f} |"
        )
    lines.append(
        f"| **total** | {energy.total_pj('loihi1') / n / 1e3:.3f} | "
        f"{energy.total_pj('cmos_snn') / n / 1e3:.3f} | "
        f"{energy.total_pj('cmos_ann') / n / 1e3:.3f} |"
    )
    return "\n".join(lines)
