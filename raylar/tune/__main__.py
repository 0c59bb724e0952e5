"""Entry point of ``python -m raylar.tune``."""

import sys

from raylar.tune.cli import main

sys.exit(main())
