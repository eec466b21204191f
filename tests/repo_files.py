"""The committed files several tests read, and a pickle that ``weights_only`` must refuse."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"
EXAMPLE_CKPT = ROOT / "netx_exports" / "digits-cnn.pt"
# The example as format 1 wrote it (no digest header): old files must stay readable.
FORMAT1 = ROOT / "tests" / "data" / "digits-cnn-format1.net"


class UnsafePickle:
    """Unpickling calls ``os.system``: a checkpoint loader must refuse it."""

    def __reduce__(self):
        return (os.system, ("true",))
