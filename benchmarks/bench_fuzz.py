"""Fuzz the readers with thousands of damaged files; count clean errors, identical reads, rest.

Corpora (seeded, reproducible), built from the committed example:

- ``netx``: ``netx_exports/digits-cnn.net`` (format 2, digest header) with random byte flips,
  truncations and zeroed blocks;
- ``netx_crafted``: the same file with one dataset or attribute replaced by a wrong-typed,
  NaN/inf, out-of-range or mis-shaped value (or deleted) and a valid digest stamped over it;
- ``netx_format1``: the format-1 copy ``tests/data/digits-cnn-format1.net`` (no digest: the
  reader parses it in a child process first) with random byte damage;
- ``checkpoint``: ``netx_exports/digits-cnn.pt`` with random byte damage;
- ``netx_metadata``: the example with one recorded metadata value (steps, dataset, model,
  class names, ...) of the wrong type or range, written with a consistent checksum and digest;
- ``npz`` / ``npz_compressed``: a 60-image digits ``.npz`` (stored / deflated) with random
  byte damage, read by ``load_npz``;
- ``npz_crafted``: well-formed archives whose ``.npy`` members lie (absurd shapes, huge,
  wrapping, negative or 1-based labels, object arrays, stray members);
- ``nir``: the digits NIR export (``export --format nir``, with its digest header) with random
  byte damage, read and checked as the runners do (``read_nir``, ``check_graph``);
- ``nir_crafted``: valid NIR files whose metadata, node parameters or wiring are wrong.

Each file is read by the package's reader (``read_netx``, ``load_checkpoint``, ``load_npz``,
``read_nir`` + ``check_graph``) in worker
processes, so that a crash would be counted instead of ending the run; a worker that dies is
replaced and the file it was reading is recorded as a crash. Every outcome must be
``error`` (the typed error) or ``identical`` (read back exactly). For the NetX corpora the
same files are also opened with plain h5py (as lava-dl's reader does, without our checks),
to show what the guard protects against. Writes ``benchmarks/results/fuzz.json``.

    .venv/bin/python benchmarks/bench_fuzz.py [--cases 1000] [--crafted 300] [--format1 150]
        [--checkpoints 500] [--netx-metadata 100] [--npz 400] [--npz-crafted 300] [--nir 300]
        [--nir-crafted 250] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the damage generators shared with the fuzz tests
sys.path.insert(0, str(ROOT))  # this tree's qcfs_lava (as the workers), not an installed one

from netfuzz import (  # noqa: E402
    ERROR,
    IDENTICAL,
    checkpoint_outcome,
    craft_hdf5,
    craft_netx_metadata,
    craft_nir,
    craft_npz,
    damage_bytes,
    netx_outcome,
    nir_outcome,
    npz_outcome,
    npz_sample,
)

OUT = ROOT / "benchmarks" / "results" / "fuzz.json"
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"
FORMAT1 = ROOT / "tests" / "data" / "digits-cnn-format1.net"
CHECKPOINT = ROOT / "netx_exports" / "digits-cnn.pt"


# --------------------------------------------------------------------------- corpus


def build_corpus(folder: Path, args) -> list[dict]:
    from qcfs_lava.safe_hdf5 import write_digest_header

    rng = np.random.default_rng(args.seed)
    cases = []

    def add(corpus: str, kind: str, data: bytes | None, suffix: str, source: Path) -> Path:
        path = folder / f"{corpus}-{len(cases):05d}{suffix}"
        if data is not None:
            path.write_bytes(data)
        else:
            shutil.copyfile(source, path)
        cases.append({"corpus": corpus, "kind": kind, "path": str(path)})
        return path

    for source, corpus, n, suffix in ((EXAMPLE, "netx", args.cases, ".net"),
                                      (FORMAT1, "netx_format1", args.format1, ".net"),
                                      (CHECKPOINT, "checkpoint", args.checkpoints, ".pt")):
        data = source.read_bytes()
        for _ in range(n):
            kind, damaged = damage_bytes(data, rng)
            add(corpus, kind, damaged, suffix, source)
    for _ in range(args.crafted):
        path = add("netx_crafted", "crafted", None, ".net", EXAMPLE)
        cases[-1]["kind"] = craft_hdf5(path, rng)
        write_digest_header(path)

    from qcfs_lava.netx import read_netx, write_netx

    net = read_netx(EXAMPLE)
    for _ in range(args.netx_metadata):
        label, crafted = craft_netx_metadata(net, rng)
        path = folder / f"netx_metadata-{len(cases):05d}.net"
        write_netx(crafted, path)
        cases.append({"corpus": "netx_metadata", "kind": label, "path": str(path)})

    for corpus, compressed in (("npz", False), ("npz_compressed", True)):
        intact = npz_sample(folder / f"intact-{corpus}.npz", compressed)
        data = intact.read_bytes()
        for _ in range(args.npz // 2):
            kind, damaged = damage_bytes(data, rng)
            add(corpus, kind, damaged, ".npz", intact)
    with np.load(folder / "intact-npz.npz") as f:
        x, y = f["x"], f["y"]
    for _ in range(args.npz_crafted):
        kind, data = craft_npz(rng, x, y)
        add("npz_crafted", kind, data, ".npz", folder)

    from qcfs_lava.nir_exchange.export import export_checkpoint
    from qcfs_lava.nir_exchange.semantics import write_nir

    graph, _ = export_checkpoint(CHECKPOINT, folder / "intact.nir", steps=4)
    data = (folder / "intact.nir").read_bytes()
    for _ in range(args.nir):
        kind, damaged = damage_bytes(data, rng)
        add("nir", kind, damaged, ".nir", folder)
    for _ in range(args.nir_crafted):
        label, crafted = craft_nir(graph, rng)
        path = folder / f"nir_crafted-{len(cases):05d}.nir"
        write_nir(crafted, path)
        cases.append({"corpus": "nir_crafted", "kind": label, "path": str(path)})
    return cases


# --------------------------------------------------------------------------- worker


def worker(manifest: Path) -> None:
    """Read each case of ``manifest`` and print ``index<TAB>outcome<TAB>raw`` per line."""
    from qcfs_lava.checkpoint import load_checkpoint
    from qcfs_lava.data import load_npz
    from qcfs_lava.netx import read_netx
    from qcfs_lava.nir_exchange.semantics import read_nir
    from qcfs_lava.safe_hdf5 import _read_everything

    folder = manifest.parent
    refs = {"netx": read_netx(EXAMPLE), "netx_crafted": read_netx(EXAMPLE),
            "netx_metadata": read_netx(EXAMPLE), "netx_format1": read_netx(FORMAT1),
            "checkpoint": load_checkpoint(CHECKPOINT).to_dict(),
            "npz": load_npz(folder / "intact-npz.npz"),
            "npz_compressed": load_npz(folder / "intact-npz_compressed.npz"),
            "npz_crafted": None, "nir": read_nir(folder / "intact.nir"),
            "nir_crafted": read_nir(folder / "intact.nir")}
    readers = {"checkpoint": checkpoint_outcome, "npz": npz_outcome,
               "npz_compressed": npz_outcome, "npz_crafted": npz_outcome, "nir": nir_outcome,
               "nir_crafted": nir_outcome}
    for line in manifest.read_text().splitlines():
        index, corpus, path, raw = line.split("\t")
        print(f"start\t{index}", flush=True)
        if raw == "raw":  # plain h5py, no guard: what lava-dl's reader would go through
            try:
                _read_everything(path)
                outcome = "opened"
            except Exception as exc:  # noqa: BLE001 - counted by type
                outcome = f"raised {type(exc).__name__}"
        else:
            outcome = readers.get(corpus, netx_outcome)(Path(path), refs[corpus])
        print(f"{index}\t{outcome}", flush=True)


def run_jobs(jobs: list[tuple[int, str, str, str]], n_workers: int, folder: Path,
             timeouts: dict[str, float], progress_every: int = 200) -> dict[int, str]:
    """Run ``jobs`` in ``n_workers`` worker processes, replacing any that die or hang.

    A worker announces each job before it starts it; one that dies is recorded as a crash of
    that job, one that is silent for longer than ``timeouts[mode]`` is killed and recorded as
    a hang. The rest of its jobs go to a new worker.
    """
    import selectors

    results: dict[int, str] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sel = selectors.DefaultSelector()
    state: dict[int, dict] = {}
    last_report = 0

    def start(chunk: list) -> None:
        manifest = folder / f"manifest-{chunk[0][0]}.tsv"
        manifest.write_text("\n".join("\t".join(map(str, job)) for job in chunk) + "\n")
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(manifest)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        os.set_blocking(proc.stdout.fileno(), False)
        state[proc.pid] = {"proc": proc, "chunk": chunk, "done": set(), "current": None,
                           "since": time.monotonic(), "buffer": b""}
        sel.register(proc.stdout, selectors.EVENT_READ, proc.pid)

    def finish(pid: int, outcome_of_current: str) -> None:
        st = state.pop(pid)
        sel.unregister(st["proc"].stdout)
        st["proc"].stdout.close()
        rest = [job for job in st["chunk"] if job[0] not in st["done"]]
        if rest and st["current"] is not None:
            results[st["current"]] = outcome_of_current
            rest = [job for job in rest if job[0] != st["current"]]
        if rest:
            start(rest)

    for i in range(n_workers):
        if jobs[i::n_workers]:
            start(jobs[i::n_workers])
    modes = {job[0]: job[3] for job in jobs}
    while state:
        for key, _ in sel.select(timeout=1.0):
            st = state[key.data]
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:  # the worker ended
                st["proc"].wait()
                code = st["proc"].returncode
                finish(key.data, f"crash (exit {code})" if code else "missing")
                continue
            st["buffer"] += chunk
            *lines, st["buffer"] = st["buffer"].split(b"\n")
            for line in lines:
                fields = line.decode().split("\t", 2)
                if fields[0] == "start":
                    st["current"], st["since"] = int(fields[1]), time.monotonic()
                else:
                    results[int(fields[0])] = fields[1]
                    st["done"].add(int(fields[0]))
                    st["current"] = None
        now = time.monotonic()
        for pid, st in list(state.items()):
            current = st["current"]
            if current is not None and now - st["since"] > timeouts[modes[current]]:
                st["proc"].kill()
                st["proc"].wait()
                finish(pid, f"hang (killed after {timeouts[modes[current]]:.0f} s)")
        if len(results) - last_report >= progress_every:
            last_report = len(results)
            print(f"  {len(results)}/{len(jobs)} read", flush=True)
    return results


# --------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000, help="damaged format-2 NetX files")
    p.add_argument("--crafted", type=int, default=300, help="crafted format-2 NetX files")
    p.add_argument("--format1", type=int, default=150, help="damaged format-1 NetX files")
    p.add_argument("--checkpoints", type=int, default=500, help="damaged checkpoints")
    p.add_argument("--netx-metadata", type=int, default=100,
                   help="NetX files with crafted recorded metadata")
    p.add_argument("--npz", type=int, default=400,
                   help="damaged npz datasets (half stored, half deflated)")
    p.add_argument("--npz-crafted", type=int, default=300, help="npz archives with lying members")
    p.add_argument("--nir", type=int, default=300, help="damaged NIR files")
    p.add_argument("--nir-crafted", type=int, default=250,
                   help="NIR files with crafted metadata, parameters or wiring")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds one reader call may take before it counts as a hang (the "
                   "format-1 child probe itself gives up after 120 s)")
    p.add_argument("--raw-timeout", type=float, default=30.0,
                   help="seconds one plain-h5py read may take before it counts as a hang")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(Path(args.worker))
        return

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qcfs-fuzz-") as tmp:
        folder = Path(tmp)
        cases = build_corpus(folder, args)
        print(f"{len(cases)} damaged files in {folder}", flush=True)
        jobs = [(i, c["corpus"], c["path"], "reader") for i, c in enumerate(cases)]
        raw_jobs = [(len(cases) + i, c["corpus"], c["path"], "raw")
                    for i, c in enumerate(cases) if c["corpus"].startswith("netx")]
        results = run_jobs(jobs + raw_jobs, args.workers, folder,
                           {"reader": args.timeout, "raw": args.raw_timeout})
    elapsed = time.perf_counter() - start

    summary: dict[str, dict] = {}
    others = []
    for i, case in enumerate(cases):
        outcome = results.get(i, "missing")
        raw = results.get(len(cases) + i)
        s = summary.setdefault(case["corpus"], {"files": 0, "clean_errors": 0,
                                                "identical_reads": 0, "anything_else": 0,
                                                "unguarded_h5py": Counter()})
        s["files"] += 1
        if outcome == ERROR:
            s["clean_errors"] += 1
        elif outcome == IDENTICAL:
            s["identical_reads"] += 1
        else:
            s["anything_else"] += 1
            others.append({**case, "outcome": outcome})
        if raw is not None:
            s["unguarded_h5py"][raw.split(" ")[0]] += 1  # opened / raised / crash / hang
    for s in summary.values():
        s["unguarded_h5py"] = dict(s["unguarded_h5py"]) or None
    total = {k: sum(s[k] for s in summary.values())
             for k in ("files", "clean_errors", "identical_reads", "anything_else")}
    data = {
        "command": "python benchmarks/bench_fuzz.py " + " ".join(sys.argv[1:]),
        "seed": args.seed,
        "total": total,
        "corpora": summary,
        "anything_else_cases": others[:50],
        "seconds": elapsed,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.workers} workers",
        "python": platform.python_version(),
    }
    import h5py

    data["hdf5"] = h5py.version.hdf5_version
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({"total": total, **{k: {kk: vv for kk, vv in v.items()}
                                         for k, v in summary.items()}}, indent=2))
    print(f"wrote {args.out} ({elapsed:.0f} s)")
    if total["anything_else"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
