"""`python -m ovchat ...`: the same as the `ovchat` command."""

import sys

from .tools.cli import main

sys.exit(main())
