"""Process B of the two-process tests: an app process that follows the store through a watcher
and answers "how long until this check flips?" (started with multiprocessing's spawn)."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection

from salesauthz import Authorizer, Record

# Hostile, yet a name a Casbin store can hold too (a comma only inside brackets).
ACCOUNT, DOMAIN = "华东 rep(1,a)", "acme"
RECORD = Record("customer", owner="someone")


def serve(pipe: Connection, store_url: str, watch_url: str, staleness: float) -> None:
    authz = Authorizer.from_url(store_url, watch=watch_url, staleness=staleness)
    pipe.send(("ready", authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN)))
    try:
        while True:
            command = pipe.recv()
            if command[0] == "stop":
                return
            if command[0] == "check":
                pipe.send(authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN))
            elif command[0] == "wait":  # ("wait", expected, timeout): when did the check flip?
                expected, timeout = bool(command[1]), float(command[2])
                deadline = time.monotonic() + timeout
                flipped: float | None = None
                while time.monotonic() < deadline:
                    if authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN) == expected:
                        flipped = time.time()
                        break
                    time.sleep(0.0005)
                pipe.send(flipped)
    finally:
        authz.close()
