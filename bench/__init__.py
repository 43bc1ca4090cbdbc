"""Benchmarks: each compares Module Mesh with raw grpc.aio / nats-py in the same run."""

import sys
from pathlib import Path

# The modules folder is an import root (as for sdk.run and pytest): `greeter.v1` etc.
_MODULES = str(Path(__file__).resolve().parent.parent / "modules")
if _MODULES not in sys.path:
    sys.path.append(_MODULES)
