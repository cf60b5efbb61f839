"""``salesauthz audit``: verify a store's audit trail, export checkpoints, re-anchor a trail.

``audit verify --url URL [--domain D] [--checkpoint FILE]`` checks every domain's chain against
its anchor (and against the checkpoints in FILE); ``audit checkpoint --url URL [--domain D …]
[-o FILE]`` writes checkpoints to keep outside the database; ``audit anchor --url URL --domain D
--reason TEXT`` accepts a trail as it now ends (recorded in the trail itself). The audit key comes
from ``SALESAUTHZ_AUDIT_KEY`` (and ``SALESAUTHZ_AUDIT_RETIRED_KEYS``), never from the command line.

Exit codes: 0 intact / done, 1 a trail is broken (nothing written), 2 usage error, unreadable
checkpoint file, bad key or unreachable store.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salesauthz._wording import count

from .storage_commands import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, _default_actor, _error

if TYPE_CHECKING:
    from salesauthz.adapters.base import Adapter
    from salesauthz.audit import AuditCheckpoint

__all__ = ["read_checkpoints", "register"]


def read_checkpoints(path: str) -> list[AuditCheckpoint]:
    """The checkpoints in ``path`` (one JSON object, or a list of them). Raises
    :class:`~salesauthz.errors.AuditError` naming the file, or :class:`OSError`."""
    from salesauthz.audit import AuditCheckpoint
    from salesauthz.errors import AuditError

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AuditError(f"{path}: not an audit checkpoint: invalid JSON ({exc})") from None
    try:
        return [AuditCheckpoint.from_data(item) for item in (data if isinstance(data, list) else [data])]
    except AuditError as exc:
        raise AuditError(f"{path}: {exc}") from None


def _open(url: str, *, read_only: bool = True) -> Adapter:
    """The store: verifying and checkpointing only read it (no file, no table is created)."""
    if read_only:
        from .readonly import open_read_only

        return open_read_only(url)
    from salesauthz.adapters import open_adapter

    return open_adapter(url)


def _cmd_verify(args: argparse.Namespace) -> int:
    from salesauthz.adapters import mask_url
    from salesauthz.audit import AuditTrail, AuditVerificationError
    from salesauthz.errors import AuditError, StorageError

    try:
        checkpoints = read_checkpoints(args.checkpoint) if args.checkpoint else []
    except AuditError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _error(f"cannot read {args.checkpoint}: {exc.strerror or exc}")
        return EXIT_USAGE
    if args.domain is not None and checkpoints:
        checkpoints = [c for c in checkpoints if c.domain == args.domain]
        if not checkpoints:
            _error(f"{args.checkpoint} holds no checkpoint of domain {args.domain!r}")
            return EXIT_USAGE
    try:
        with closing(_open(args.url)) as store:
            trail = AuditTrail(store)
            found = {p.domain: p for p in trail.problems(args.domain)}
            for checkpoint in checkpoints:  # each also re-checks its domain's chain and anchor
                for problem in trail.problems(checkpoint.domain, checkpoint=checkpoint)[:1]:
                    found.setdefault(problem.domain, problem)
            try:
                snapshot = store.read_audit(args.domain)
                counts = {d: len(snapshot.records_of(d)) for d in snapshot.domains()}
            except AuditVerificationError:  # a stored row that is no record: already in `found`
                counts = {}
    except (AuditError, StorageError) as exc:  # a malformed key, an unreachable store
        _error(str(exc) + _UNANCHORED_HINT if "anchors" in str(exc) else str(exc))
        return EXIT_USAGE
    domains = sorted({*found, *counts, *(c.domain for c in checkpoints)})
    if args.format == "json":
        print(json.dumps({
            "url": mask_url(args.url), "ok": not found, "checkpoints": len(checkpoints),
            "domains": {d: {"records": counts.get(d, 0),
                            "problem": None if d not in found else
                            {"sequence": found[d].sequence, "problem": found[d].problem}}
                        for d in domains},
        }, ensure_ascii=False, indent=2))
    else:
        for domain in domains:
            print(found[domain] if domain in found
                  else f"{domain}: intact ({count(counts.get(domain, 0), 'record')})")
        against = f", {count(len(checkpoints), 'checkpoint')}" if checkpoints else ""
        verdict = count(len(found), "broken trail") if found else "every trail intact"
        print(f"{verdict} in {mask_url(args.url)} ({count(len(domains), 'domain')}{against})")
    return EXIT_FINDINGS if found else EXIT_OK


# verify opens the store read-only: it never creates the anchors table a store written by a
# salesauthz from before anchors lacks (the first writer to open it does, anchoring its trails).
_UNANCHORED_HINT = (" — verify only reads; a store last written by a salesauthz from before audit "
                    "anchors gets them when a writer first opens it (your application, or `salesauthz "
                    "audit anchor`)")


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    from salesauthz.audit import AuditTrail
    from salesauthz.errors import AuditError, AuditVerificationError, StorageError

    try:
        with closing(_open(args.url)) as store:
            trail = AuditTrail(store)
            domains = list(dict.fromkeys(args.domain)) if args.domain else store.read_audit().domains()
            checkpoints = [trail.checkpoint(d) for d in domains]
    except AuditVerificationError as exc:
        _error(f"{exc}; no checkpoint written")
        return EXIT_FINDINGS
    except (AuditError, StorageError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    if len(checkpoints) == 1:
        text = checkpoints[0].to_json()
    else:
        text = json.dumps([json.loads(c.to_json()) for c in checkpoints], ensure_ascii=False, indent=2) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            _error(f"cannot write {args.output}: {exc.strerror or exc}")
            return EXIT_USAGE
        print(f"wrote {args.output} ({count(len(checkpoints), 'checkpoint')})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_anchor(args: argparse.Namespace) -> int:
    from salesauthz.audit import AuditTrail
    from salesauthz.errors import AuditError, StorageError

    try:
        with closing(_open(args.url, read_only=False)) as store:
            trail = AuditTrail(store)
            for domain in dict.fromkeys(args.domain):
                record = trail.reanchor(domain, actor=args.actor or _default_actor(), reason=args.reason)
                print(f"{domain}: anchored at record {record.sequence} ({record.detail})")
    except (AuditError, StorageError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    return EXIT_OK


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``audit`` and its subcommands to the ``salesauthz`` parser."""
    audit = commands.add_parser(
        "audit", help="verify a store's audit trail, export checkpoints, re-anchor a trail",
        description="The audit key is read from SALESAUTHZ_AUDIT_KEY (and SALESAUTHZ_AUDIT_RETIRED_KEYS).")
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    url_help = "the store: sqlite:///salesauthz.db, postgresql://…, casbin+<url>"

    verify = actions.add_parser("verify", help="check every chain against its anchor (and checkpoints)")
    verify.add_argument("--url", required=True, help=url_help)
    verify.add_argument("--domain", default=None, help="only this domain")
    verify.add_argument("--checkpoint", metavar="FILE", default=None,
                        help="also check the trail still extends the checkpoint(s) in FILE")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(handler=_cmd_verify)

    checkpoint = actions.add_parser("checkpoint", help="write checkpoints to keep outside the database")
    checkpoint.add_argument("--url", required=True, help=url_help)
    checkpoint.add_argument("--domain", action="append", default=None,
                            help="a domain (repeat for several; default: every domain with a trail)")
    checkpoint.add_argument("--output", "-o", metavar="FILE", default=None, help="write to FILE")
    checkpoint.set_defaults(handler=_cmd_checkpoint)

    anchor = actions.add_parser("anchor", help="accept a trail as it now ends (recorded in the trail)")
    anchor.add_argument("--url", required=True, help=url_help)
    anchor.add_argument("--domain", action="append", required=True, help="a domain (repeat for several)")
    anchor.add_argument("--reason", required=True, help="why: recorded in the re-anchoring record")
    anchor.add_argument("--actor", default=None, help="who to name in the audit trail")
    anchor.set_defaults(handler=_cmd_anchor)
