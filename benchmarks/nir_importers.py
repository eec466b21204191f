"""What each NIR importer computes on a qcfs-lava NIR file, as is and through the shims.

For each checkpoint: export the float SNN to NIR, then on the test split at T steps run the
float SNN itself, qcfs-lava's reference executor and own import, the snntorch and sinabs
shims, NIR's literal IF semantics, and the libraries' own importers as they are
(``snntorch.import_nir.import_from_nir``, ``sinabs.from_nir``, ``nirtorch.nir_to_torch`` with
its default map). Records accuracy, prediction mismatches against the float SNN, or the error
an importer raised. Writes benchmarks/results/nir-importers.json.

    .venv/bin/python benchmarks/nir_importers.py --checkpoint netx_exports/digits-cnn.pt \\
        [--checkpoint runs/resnet20-digits/best.pt] [--steps 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from qcfs_lava.checkpoint import load_checkpoint
from qcfs_lava.data import load_dataset, normalize
from qcfs_lava.io import write_json
from qcfs_lava.nir_exchange.executor import run_nir
from qcfs_lava.nir_exchange.export import export_checkpoint
from qcfs_lava.nir_exchange.importer import from_nir
from qcfs_lava.nir_exchange.shims import run_sinabs, run_snntorch
from qcfs_lava.snn import snn_outputs

OUT = Path(__file__).parent / "results" / "nir-importers.json"


def _batched(fn, x, batch=256):
    return np.concatenate([fn(x[i:i + batch]) for i in range(0, len(x), batch)], axis=1)


def _snntorch_as_is(path, xf, steps):
    import nir
    from snntorch.import_nir import import_from_nir

    module = import_from_nir(nir.read(path))
    outs = []
    for _ in range(steps):
        out = module(xf)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.stack(outs).detach().numpy()


def _sinabs_as_is(path, xf, steps):
    import nir
    import sinabs

    module = sinabs.from_nir(nir.read(path), num_timesteps=steps)
    n = len(xf)
    folded = xf.unsqueeze(1).expand(n, steps, *xf.shape[1:]).reshape(n * steps, *xf.shape[1:])
    with torch.no_grad():
        out = module(folded)
    out = out[0] if isinstance(out, tuple) else out
    return out.reshape(n, steps, -1).transpose(0, 1).numpy()


def _nirtorch_default(path, xf, steps):
    import nirtorch

    module = nirtorch.nir_to_torch(str(path), {})
    return torch.stack([module(xf)[0] for _ in range(steps)]).detach().numpy()


def measure(ckpt_path: str, steps: int) -> dict:
    ckpt = load_checkpoint(ckpt_path)
    split = load_dataset(ckpt.dataset)
    x, y = split.x_test, split.y_test
    xf = normalize(x, ckpt.mean, ckpt.std)
    model = ckpt.build_model()
    ref = _batched(lambda b: snn_outputs(model, b, steps).numpy(), xf)
    ref_pred = ref.mean(0).argmax(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.nir"
        export_checkpoint(ckpt_path, path, steps=steps)
        runners = {
            "reference executor (float64)": lambda: run_nir(path, x).outputs,
            "qcfs-lava import (torch)": lambda: _batched(
                lambda b: from_nir(path).run(b, steps).numpy(), xf),
            "snntorch 1.0.0 + shim": lambda: run_snntorch(path, xf, steps),
            "sinabs 3.1.3 + shim": lambda: run_sinabs(path, xf, steps),
            "NIR literal IF semantics": lambda: run_nir(path, x, literal=True).outputs,
            "snntorch 1.0.0 import_from_nir as is": lambda: _snntorch_as_is(path, xf, steps),
            "sinabs 3.1.3 from_nir as is": lambda: _sinabs_as_is(path, xf, steps),
            "nirtorch 2.6 default map": lambda: _nirtorch_default(path, xf, steps),
        }
        rows = {"float SNN": {"accuracy": float(np.mean(ref_pred == y)), "mismatches": 0}}
        for name, run in runners.items():
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = run()
                if out.shape != ref.shape:
                    raise ValueError(f"returned outputs of shape {out.shape}, expected the "
                                     f"logits {ref.shape}")
                pred = out.mean(0).argmax(1)
                rows[name] = {"accuracy": float(np.mean(pred == y)),
                              "mismatches": int(np.sum(pred != ref_pred)),
                              "max_abs_output_difference": float(np.abs(out - ref).max())}
            except Exception as exc:  # an importer failing is a result here
                rows[name] = {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
            rows[name]["seconds"] = round(time.perf_counter() - t0, 2)
            print(f"{ckpt_path} {name}: {rows[name]}", flush=True)
    return {"checkpoint": ckpt_path, "model": ckpt.model, "dataset": ckpt.dataset,
            "samples": int(len(y)), "steps": steps, "runs": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", action="append", required=True)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    results = [measure(c, args.steps) for c in args.checkpoint]
    write_json(args.out, {"command": " ".join(["python"] + sys.argv), "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
