"""The results of :func:`~qcfs_lava.analysis.resources.map_resources`: typed, JSON-ready."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from qcfs_lava import hardware as hw
from qcfs_lava.analysis.resources.pools import PoolFold


@dataclass(frozen=True)
class Violation:
    """A per-core limit a layer breaks.

    Attributes:
        layer: layer name.
        limit: limit key (``input_axons``, ...).
        value: what the layer needs (on one core for ``severity="split"``; for one neuron,
            which cannot be split, for ``severity="error"``).
        allowed: the limit.
        severity: ``"split"`` (the placement splits the layer over cores) or ``"error"``
            (no split helps: the network must change).
        advice: what to do.
    """

    layer: str
    limit: str
    value: int
    allowed: int
    severity: str
    advice: str


@dataclass(frozen=True)
class LayerResources:
    """Resources and placement of one layer (the model: :mod:`qcfs_lava.analysis.resources`).

    Attributes:
        kind: the kinds of its incoming synapses (``conv+conv`` for a residual layer).
        fan_in_max, fan_in_mean: input axons per neuron; ``fan_out_*`` synapses per neuron
            into its consumers (0 for the output layer).
        weight_bits, sign_mode: weight precision and sign mode as exported (stored values
            ``2 q``, ``q`` signed 8-bit, mixed sign mode); ``weight_bits_used``: bits the
            largest ``|q|`` needs, sign included.
        memory_dense_bits: ``synapses * (weight_bits + index_bits)``; ``memory_shared_bits``
            the same with each conv kernel stored once (``None`` without a conv synapse).
        cores_by_limit: cores each per-core limit asks for (``None``: no split fits).
        binding: the limit asking for the most cores; ``cores`` what the placement uses.
        first_core: global index of its first core; ``*_per_core``: largest over its cores.
        messages_per_spike: destination cores a spike is sent to (spike-weighted mean);
            ``hops_per_spike``: summed mesh hops of those messages.
        spikes_per_step, messages_per_step: measured means per sample step (with a run);
            ``messages_per_core_step``: per destination core, mean and ``_max``.
        pool_fold: the folded pool and its unfolded alternative, if any.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    neurons: int
    fan_in_max: int
    fan_in_mean: float
    fan_out_max: int
    fan_out_mean: float
    synapses: int
    weight_bits: int
    weight_bits_used: int
    sign_mode: str
    memory_dense_bits: int
    memory_shared_bits: int | None
    cores_by_limit: dict[str, int | None]
    binding: str
    cores: int
    neurons_per_core: int
    first_core: int
    input_axons_per_core: int
    output_axons_per_core: int
    memory_per_core_bits: int
    messages_per_spike: float
    hops_per_spike: float
    spikes_per_step: float | None = None
    messages_per_step: float | None = None
    messages_per_core_step: float | None = None
    messages_per_core_step_max: float | None = None
    pool_fold: PoolFold | None = None


@dataclass(frozen=True)
class ResourceReport:
    """Resources of a network on one chip type (:func:`map_resources`).

    Attributes:
        chip: ``"loihi1"`` or ``"loihi2"``.
        limits: the limits used, with sources.
        layers: one :class:`LayerResources` per layer.
        cores: cores of the placement (one layer per core).
        chips: chips needed (cores, and chip-level neuron/synapse totals where published).
        violations: every per-core limit broken (split or error).
        energy: Loihi 1 energy with hops = 0 and with the placement's hops (per sample), or
            ``None`` without a run.
        traffic_source: where the spike counts come from (``None``: no run).
        notes: statements the reader needs (limits not public, what is not modelled).
    """

    chip: str
    limits: tuple[hw.HardwareLimit, ...]
    layers: tuple[LayerResources, ...]
    cores: int
    chips: int
    violations: tuple[Violation, ...]
    energy: dict | None = None
    traffic_source: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[Violation, ...]:
        """Violations no split can fix."""
        return tuple(v for v in self.violations if v.severity == "error")

    @property
    def fits(self) -> bool:
        """True when every layer can be placed within every public per-core limit."""
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "chip": self.chip,
            "fits": self.fits,
            "cores": self.cores,
            "chips": self.chips,
            "neurons": sum(la.neurons for la in self.layers),
            "synapses": sum(la.synapses for la in self.layers),
            "limits": [asdict(limit) for limit in self.limits],
            "layers": [asdict(la) for la in self.layers],
            "violations": [asdict(v) for v in self.violations],
            "energy": self.energy,
            "traffic_source": self.traffic_source,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ResourceRunResult:
    """Resources of a network, with the run that measured its traffic (if any).

    Attributes:
        report: the :class:`ResourceReport`.
        samples: samples of the run (``None``: no run, structure only).
        steps: ``T`` of the run (``None``: no run).
        accuracy: accuracy of the run, where labels were known.
        pool_check: with the pool check, ``{layer name: {"pool", "source", "entries",
            "differing"}}`` (:func:`~qcfs_lava.analysis.resources.compare_unfolded_pools`);
            ``None`` without it.
    """

    report: ResourceReport
    samples: int | None = None
    steps: int | None = None
    accuracy: float | None = None
    pool_check: dict[str, dict] | None = None

    @property
    def pools_identical(self) -> bool | None:
        """True when every pool-folded layer had identical input currents with a separate
        sum-pool layer (so the same accuracy); ``None`` without the check or a pool."""
        if not self.pool_check:
            return None
        return all(v["differing"] == 0 for v in self.pool_check.values())

    def to_dict(self) -> dict:
        """The report's :meth:`ResourceReport.to_dict`, with ``pool_check`` where checked."""
        extra = {} if self.pool_check is None else {"pool_check": self.pool_check}
        return {**self.report.to_dict(), **extra}
