"""``python -m examples.crm_api [serve] [--host H] [--port P] [--workers N]`` runs the example CRM;
``python -m examples.crm_api token ACCOUNT [--domain acme]`` prints a bearer token for it.

Both read the signing secret from ``CRM_TOKEN_SECRET`` (the server refuses to start without it,
so that the tokens you mint are the ones it accepts). The server reads the rest of its
configuration from the environment too (``CRM_DATABASE_URL``, ``CRM_STORE_URL``,
``CRM_WATCH_URL``, ``CRM_STALENESS``: see ``examples/crm_api/app.py``); several workers need a
shared database, a shared store and a watch channel.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from salesauthz.middleware import HS256Tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.crm_api", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the API with uvicorn (the default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--database", default=None,
                       help="the CRM's tables, a SQLAlchemy URL (default: CRM_DATABASE_URL, or in memory)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    token = commands.add_parser("token", help="print a bearer token for an account")
    token.add_argument("account")
    token.add_argument("--domain", default="acme")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds the token stays valid")
    args = parser.parse_args(argv)

    secret = os.environ.get("CRM_TOKEN_SECRET")
    if not secret:
        print("set CRM_TOKEN_SECRET to a random string of at least 32 characters, e.g.\n"
              '  export CRM_TOKEN_SECRET="$(python -c \'import secrets; print(secrets.token_urlsafe(48))\')"',
              file=sys.stderr)
        return 2
    if args.command == "token":
        print(HS256Tokens(secret).mint(args.account, domain=args.domain, ttl=args.ttl))
        return 0

    import uvicorn

    database = getattr(args, "database", None)
    if database:
        os.environ["CRM_DATABASE_URL"] = database  # the workers read their configuration from it
    workers = getattr(args, "workers", 1)
    if workers > 1:
        missing = [name for name in ("CRM_DATABASE_URL", "CRM_STORE_URL", "CRM_WATCH_URL")
                   if not os.environ.get(name)]
        if missing:
            print("several workers must share their data, rules and change channel: set "
                  f"{', '.join(missing)} (see examples/crm_api/README.md)", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    # The factory's import string: each worker process builds its own app (and Authorizer).
    uvicorn.run("examples.crm_api.app:create_app", factory=True, host=getattr(args, "host", "127.0.0.1"),
                port=getattr(args, "port", 8000), workers=workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
