"""Suite-wide pytest setup. Area fixtures live in tests/<area>/conftest.py and tests/support/."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Proxy variables on a developer's machine would send loopback gRPC through a proxy.
for _var in ("grpc_proxy", "GRPC_PROXY", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
    os.environ.pop(_var, None)
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
