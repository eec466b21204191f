"""The resource report as Markdown or terminal text."""

from __future__ import annotations

from qcfs_lava.analysis.resources.results import (
    LayerResources,
    ResourceReport,
    ResourceRunResult,
)

_SHORT = {"compartments": "cx", "input_axons": "in", "output_axons": "out",
          "synaptic_memory_bits": "mem", "synapses_per_core": "syn"}


def format_resources_markdown(rep: ResourceReport, *, heading: str = "##") -> str:
    """The report as Markdown: limits, per-layer table, pools, traffic, violations."""
    lines = (_summary(rep, heading) + _layer_table(rep) + _pool_table(rep)
             + _placement_table(rep) + _energy_table(rep) + _violation_table(rep)
             + _limit_table(rep))
    if rep.notes:
        lines += [""] + [f"- {note}" for note in rep.notes]
    return "\n".join(lines)


def format_resources_text(rep: ResourceReport) -> str:
    """The report for a terminal (the same content as :func:`format_resources_markdown`)."""
    return format_resources_markdown(rep, heading="#")


def _kbits(bits: int | None) -> str:
    return "-" if bits is None else f"{bits / 1024:.0f}"


def _cores_cell(r: LayerResources) -> str:
    return " / ".join(f"{_SHORT[k]} {'X' if v is None else v}"
                      for k, v in r.cores_by_limit.items())


def _optional(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _yes_no(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "**no**")


def _summary(rep: ResourceReport, heading: str) -> list[str]:
    dense = sum(r.memory_dense_bits for r in rep.layers)
    shared = sum(r.memory_shared_bits or r.memory_dense_bits for r in rep.layers)
    return [
        f"{heading} Resources on {rep.chip} (greedy placement, one layer per core)",
        "",
        f"**{rep.cores} cores, {rep.chips} chip(s)**; "
        + ("every layer fits the public per-core limits."
           if rep.fits else f"**{len(rep.errors)} limit(s) no split can fix** (below)."),
        "",
        f"{sum(r.neurons for r in rep.layers):,} neurons, "
        f"{sum(r.synapses for r in rep.layers):,} synapses; synaptic memory "
        f"{dense / 2**20:,.1f} Mibit stored densely (what the core counts use), at least "
        f"{shared / 2**20:,.1f} Mibit with shared conv kernels.",
    ]


def _layer_table(rep: ResourceReport) -> list[str]:
    lines = [
        "",
        "| layer | kind | neurons | fan-in max | fan-out max | synapses | weights | "
        "memory dense / shared (Kibit) | cores by limit | binds | cores |",
        "|---|---|---:|---:|---:|---:|---|---:|---|---|---:|",
    ]
    for r in rep.layers:
        lines.append(
            f"| {r.name} | {r.kind} | {r.neurons} | {r.fan_in_max} | {r.fan_out_max} | "
            f"{r.synapses} | {r.weight_bits}-bit {r.sign_mode} | "
            f"{_kbits(r.memory_dense_bits)} / {_kbits(r.memory_shared_bits)} | "
            f"{_cores_cell(r)} | {r.binding} | {r.cores} |"
        )
    return lines + [
        "",
        "cores by limit: cx compartments, in input axons, out output axons, mem synaptic "
        "memory (dense storage), syn synapses per core; X: no split fits (a single neuron "
        "breaks the limit). Shared: each conv kernel stored once (lower bound).",
    ]


def _pool_table(rep: ResourceReport) -> list[str]:
    pools = [r for r in rep.layers if r.pool_fold is not None]
    if not pools:
        return []
    lines = [
        "",
        "Average pools folded into the next layer (exact), and the alternative of a "
        "separate sum-pool layer:",
        "",
        "| layer | pool (from) | fan-in folded | fan-in unfolded | synapses folded | "
        "synapses unfolded (+pool) | pool neurons | fits folded / unfolded |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in pools:
        p = r.pool_fold
        lines.append(
            f"| {r.name} | {p.pool[0]}x{p.pool[1]} ({p.source}) | {p.folded_fan_in} | "
            f"{p.unfolded_fan_in} | {p.folded_synapses} | {p.unfolded_synapses} | "
            f"{p.pool_neurons} | {_yes_no(p.folded_fits)} / {_yes_no(p.unfolded_fits)} |"
        )
    return lines + [
        "",
        "The separate pool layer sums up to pH x pW binary spikes per step, so it is exact "
        "only with graded spikes (Loihi 2); the layer after it keeps the same integer "
        "weights, so its input current, and the network's accuracy, are identical to the "
        "folded network's.",
    ]


def _placement_table(rep: ResourceReport) -> list[str]:
    lines = [
        "",
        "Placement and traffic"
        + (f" ({rep.traffic_source})" if rep.traffic_source else " (no run: structure only)")
        + ":",
        "",
        "| layer | cores | first core | neurons/core | in-axons/core | out-axons/core | "
        "memory/core (Kibit) | messages/spike | hops/spike | spikes/step | "
        "messages/step | per dest. core/step (mean / max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rep.layers:
        lines.append(
            f"| {r.name} | {r.cores} | {r.first_core} | {r.neurons_per_core} | "
            f"{r.input_axons_per_core} | {r.output_axons_per_core} | "
            f"{_kbits(r.memory_per_core_bits)} | {r.messages_per_spike:.1f} | "
            f"{r.hops_per_spike:.1f} | {_optional(r.spikes_per_step)} | "
            f"{_optional(r.messages_per_step)} | {_optional(r.messages_per_core_step)} / "
            f"{_optional(r.messages_per_core_step_max)} |"
        )
    return lines


def _energy_table(rep: ResourceReport) -> list[str]:
    e = rep.energy
    if e is None:
        return []
    lines = [
        "",
        f"Loihi 1 energy per sample (estimate): **{e['per_sample_uj_hops0']:.3f} uJ with "
        f"hops = 0**, **{e['per_sample_uj_placed']:.3f} uJ with the placement's hops** "
        f"({e['hop_pj']:g} pJ per hop).",
        "",
        "| layer | hops/spike | hops = 0 (nJ) | placed (nJ) |",
        "|---|---:|---:|---:|",
    ]
    for la in e["layers"]:
        lines.append(f"| {la['name']} | {la['hops_per_spike']:.1f} | {la['hops0_nj']:.3f} "
                     f"| {la['placed_nj']:.3f} |")
    return lines


def _violation_table(rep: ResourceReport) -> list[str]:
    lines = ["", "Violations (per-core limits; errors first):", ""]
    if not rep.violations:
        return lines + ["none"]
    lines += ["| layer | limit | value | allowed | what to do |", "|---|---|---:|---:|---|"]
    for v in sorted(rep.violations, key=lambda v: v.severity != "error"):
        mark = "**error**: " if v.severity == "error" else ""
        lines.append(f"| {v.layer} | {v.limit} | {v.value} | {v.allowed} | "
                     f"{mark}{v.advice} |")
    return lines


def _limit_table(rep: ResourceReport) -> list[str]:
    lines = ["", "Limits:", "", "| limit | value | scope | status | source |",
             "|---|---:|---|---|---|"]
    for limit in {limit.key: limit for limit in rep.limits}.values():
        val = "not public" if limit.value is None else f"{limit.value:,}"
        lines.append(f"| {limit.key} | {val} | {limit.scope} | {limit.status} | "
                     f"{limit.source} |")
    return lines


def format_run_text(result: ResourceRunResult) -> str:
    """The run that measured the traffic and its pool check, for a terminal (``""``
    without a run)."""
    if result.samples is None:
        return ""
    accuracy = f"{100 * (result.accuracy or 0):.2f}%"
    lines = [f"run: {result.samples} samples at T = {result.steps}, accuracy {accuracy}", ""]
    for name, v in (result.pool_check or {}).items():
        verdict = "identical" if v["differing"] == 0 else f"{v['differing']} differ"
        lines.append(f"pool check {name}: {v['pool'][0]}x{v['pool'][1]} pool from "
                     f"{v['source']} kept separate: input currents {verdict} on all "
                     f"{v['entries']} (sample, step, neuron) entries")
    if result.pool_check:
        same = f"{accuracy} (the same)" if result.pools_identical else "differs"
        lines += [f"accuracy with separate sum-pool layers: {same}", ""]
    return "\n".join(lines)
