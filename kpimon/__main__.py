"""``python -m kpimon`` runs the command line."""

import sys

from kpimon.cli import main

sys.exit(main())
