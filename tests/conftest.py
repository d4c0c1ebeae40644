"""Make tests/ importable (shared helpers) and keep torch to one thread per test run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
