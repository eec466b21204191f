"""Moved to :mod:`qcfs_lava.sweep` (the application layer, above the analyses it combines).

This old path keeps working: it is the same module object, not a copy.
"""

import sys

from qcfs_lava import sweep as _moved

sys.modules[__name__] = _moved
