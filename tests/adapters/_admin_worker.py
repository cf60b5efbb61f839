"""Server B of the multi-server tests: an app process following the store through a watcher,
asked by the test (server A) to make an administrative decision at a given moment (started with
multiprocessing's spawn)."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection

from salesauthz import Authorizer
from salesauthz.errors import ConflictError, EscalationError

DOMAIN = "acme"


def holds_manager(authz: Authorizer) -> bool:
    view = authz.account("mgr_east", domain=DOMAIN)
    return view is not None and "sales_manager" in view.roles


def serve(pipe: Connection, store_url: str, watch_url: str) -> None:
    authz = Authorizer.from_url(store_url, watch=watch_url, staleness=10.0)
    pipe.send("ready")
    try:
        while True:
            command = pipe.recv()
            if command == "stop":
                return
            if command == "fresh":  # wait until B sees mgr_east as a sales manager again
                deadline = time.monotonic() + 10.0
                while not holds_manager(authz) and time.monotonic() < deadline:
                    time.sleep(0.002)
                pipe.send(holds_manager(authz))
            elif command == "grant":  # at once: B may not have heard of A's change yet
                stale = holds_manager(authz)
                try:
                    authz.admin("mgr_east", domain=DOMAIN).grant("rep_e2", "customer", ["read"],
                                                                 scope="department_tree")
                    outcome = "committed"
                except EscalationError:
                    outcome = "refused"
                except ConflictError:
                    outcome = "conflict"
                pipe.send((stale, outcome, holds_manager(authz)))
    finally:
        authz.close()
