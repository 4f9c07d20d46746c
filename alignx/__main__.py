"""`python -m alignx ...` is the same as the `alignx` command."""

import sys

from alignx.cli import main

sys.exit(main())
