#!/usr/bin/env python
"""Fuzz the ``.vqc`` parser, the decoder and the entropy decoder: ``python scripts/fuzz.py --help``.

The harness lives in :mod:`vqcodec.testing.fuzz` (also ``python -m vqcodec.testing.fuzz``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqcodec.testing.fuzz import main

if __name__ == "__main__":
    raise SystemExit(main())
