"""``python -m ssd_resnet34.cli``: the command line."""

import sys

from . import main

sys.exit(main())
