"""A local HTTP server for tests that stays quiet when a client goes away.

``socketserver`` prints a traceback to ``sys.stderr`` when a handler thread meets a closed
connection — for example a handler that answers after its client timed out. That thread can
outlive its test, and its traceback then lands in whichever test runs next on the same worker
(one that asserts its output holds no traceback fails for nothing). Clients going away is
expected here; every other error is still reported.
"""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # broken pipe, reset: the client left
            return
        super().handle_error(request, client_address)
