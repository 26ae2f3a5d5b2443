"""`python -m ovchat ...`: the same as the `ovchat` command."""

import sys

from .cli.main import main

sys.exit(main())
