"""A damaged reference state dict (shapes, NaN, thresholds) is refused on import."""

from __future__ import annotations

import pytest
import torch

from qcfs_lava.cli import main


def _reference():
    from test_reference import resnet20_reference

    return resnet20_reference(width=4)


@pytest.mark.parametrize("damage", ["transposed", "nan", "threshold"])
def test_reference_import_checks_shapes_and_values(tmp_path, damage, capsys):
    sd = _reference()
    if damage == "transposed":
        sd["fc.weight"] = sd["fc.weight"].t().contiguous()  # (16, 10) instead of (10, 16)
    elif damage == "nan":
        sd["conv1.0.weight"][0, 0, 0, 0] = float("nan")
    else:
        sd["conv1.2.thresh"] = -sd["conv1.2.thresh"].abs()
    src = tmp_path / "ref.pth"
    torch.save(sd, src)
    out = tmp_path / "ck.pt"
    rc = main(["import-reference", str(src), "--arch", "resnet20", "--levels", "4",
               "--in-channels", "3", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    needle = {"transposed": "fc.weight: reference shape (16, 10), model needs (10, 16)",
              "nan": "conv1.0.weight: holds NaN", "threshold": "must be > 0"}[damage]
    assert needle in err
    assert not out.exists()
