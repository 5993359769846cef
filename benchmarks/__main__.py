"""``python -m benchmarks`` is the same as ``python -m anyway bench``."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
