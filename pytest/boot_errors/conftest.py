# SPDX-License-Identifier: Apache-2.0
"""The shared fixtures and helpers of pytest/conftest.py, here too. Twister runs this
directory on its own (sample.yaml's pytest_root), and pytest then looks for conftest.py files
only from here down; run together with the rest of pytest/ (scripts/test), both files load
and define the same fixtures, which is harmless."""

import importlib.util
import sys
from pathlib import Path

_SHARED_DIR = Path(__file__).resolve().parent.parent
if str(_SHARED_DIR) not in sys.path:
    sys.path.insert(0, str(_SHARED_DIR))  # loopback.py, which the shared conftest imports
_spec = importlib.util.spec_from_file_location("secure_mqtt_shared_conftest",
                                               _SHARED_DIR / "conftest.py")
_shared = sys.modules.get(_spec.name)
if _shared is None:
    _shared = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _shared
    _spec.loader.exec_module(_shared)
# Tests import helpers with `from conftest import ...`; that module is this one.
globals().update({name: value for name, value in vars(_shared).items()
                  if not name.startswith("__")})
