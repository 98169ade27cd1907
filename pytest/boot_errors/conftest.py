# SPDX-License-Identifier: Apache-2.0
"""pytest/conftest.py's fixtures and helpers, for when twister runs this directory alone."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # pytest/: shared_conftest, loopback
from shared_conftest import share  # noqa: E402

share(globals())
