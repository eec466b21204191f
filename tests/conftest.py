"""Shared by every test folder: the helper modules here stay importable from any of them.

The test folders mirror the package (``tests/analysis/`` for ``qcfs_lava.analysis`` ...) and
carry no ``__init__.py``, so each test file needs a basename unique across ``tests/``. The
helpers beside this file (``netgen``, ``netfuzz``, ``nir_models``, ``repo_files``) are imported
by plain name, hence ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from repo_files import EXAMPLE_CKPT  # noqa: E402


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory) -> Path:
    """A private copy of the digits example checkpoint (tests may write beside it)."""
    path = tmp_path_factory.mktemp("ck") / "ck.pt"
    path.write_bytes(EXAMPLE_CKPT.read_bytes())
    return path
