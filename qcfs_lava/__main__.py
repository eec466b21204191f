"""``python -m qcfs_lava`` runs the command line, like the ``qcfs-lava`` script."""

import sys

from qcfs_lava.cli import main

sys.exit(main())
