# SPDX-License-Identifier: Apache-2.0
"""Makes pytest/conftest.py's fixtures and helpers those of a test directory's conftest.py.

Twister runs some directories on their own (sample.yaml's pytest_root), and pytest then looks
for conftest.py files only from there down. Their conftest.py puts pytest/ on sys.path and
calls `share(globals())`; run together with the rest of pytest/ (scripts/test), both files
load and define the same fixtures, which is harmless."""

import importlib.util
import sys
from pathlib import Path

_SHARED_DIR = Path(__file__).resolve().parent


def share(namespace: dict) -> None:
    """Loads pytest/conftest.py once and copies its names into `namespace`."""
    spec = importlib.util.spec_from_file_location("secure_mqtt_shared_conftest",
                                                  _SHARED_DIR / "conftest.py")
    shared = sys.modules.get(spec.name)
    if shared is None:
        shared = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = shared
        spec.loader.exec_module(shared)
    # Tests import helpers with `from conftest import ...`; that module is the caller.
    namespace.update({name: value for name, value in vars(shared).items()
                      if not name.startswith("__")})
