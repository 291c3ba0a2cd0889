"""``python -m fusefs``: the same command as the installed ``fusefs`` entry point."""

import sys

from fusefs.cli import main

sys.exit(main())
