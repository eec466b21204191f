"""The committed files several tests read, and a pickle that ``weights_only`` must refuse."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "netx_exports" / "digits-cnn.net"
EXAMPLE_CKPT = ROOT / "netx_exports" / "digits-cnn.pt"
EXPORTS = ROOT / "netx_exports"
# The example as format 1 wrote it (no digest header): old files must stay readable.
FORMAT1 = ROOT / "tests" / "data" / "digits-cnn-format1.net"


class UnsafePickle:
    """Unpickling calls ``os.system``: a checkpoint loader must refuse it."""

    def __reduce__(self):
        return (os.system, ("true",))


def example_section(name: str) -> str:
    """The section of ``netx_exports/README.md`` that documents the example ``name``: from its
    heading to the next example's (its checksums and recorded accuracies)."""
    readme = (EXPORTS / "README.md").read_text()
    section = readme[readme.index(f"# Example export: `{name}`"):]
    end = section.find("\n# Example export", 1)
    return section if end < 0 else section[:end]


def needs_cifar10_subset() -> None:
    """Skip unless the shared cifar10-subset file is in this workspace."""
    import pytest

    from qcfs_lava.data import CIFAR10_SUBSET_FILE, default_cifar10_subset_dir

    if not (default_cifar10_subset_dir() / CIFAR10_SUBSET_FILE).is_file():
        pytest.skip("the cifar10-subset file is not in this workspace "
                    "(set QCFS_LAVA_CIFAR10_SUBSET_DIR)")
