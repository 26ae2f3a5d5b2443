"""`python -m ovchat.benchmarks ...`: the same as `ovchat bench ...`."""

import sys

from .cli import main

sys.exit(main())
