"""``salesauthz review start`` / ``review apply``: the periodic access review as a campaign.

``start`` splits a domain's access into *lines* — each role an account holds (permanently or
until a moment) and each direct grant — and gives every line to the account's reviewer: its
reporting superior (``reports_to``), else its department head, else ``--default-reviewer``. It
writes one YAML review file per reviewer (each line ``decision: undecided``, to become
``certify`` or ``revoke``), an HTML page per reviewer and ``campaign.json``, the manifest: the
domain, what the rules were at the start, and the exact rules behind every line.

``apply`` carries out the revocations through the admin API *as the reviewer* — so each is
authorized by the reviewer's own rights and audited with the reviewer as actor — and refuses what
it should not guess: a review file edited out of shape (``file:line`` errors, nothing applied),
a line whose access changed since the start (stale). Each certification goes on the audit trail
as the reviewer's act (operation ``certify``, no rule changed). It is idempotent: a revocation
or certification already in the audit trail (by that reviewer, on that account, since the start)
is not done again.

A *department head* of an account is an active account other than itself holding
``account:manage`` over it whose main department is the account's own department or the nearest
one above it that has such a manager (ties: the first name). Managers outside the account's
line of departments (a tenant-wide admin in another branch) are not its department head.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from salesauthz import _engine as engine
from salesauthz import _rules as R
from salesauthz._engine import Snapshot
from salesauthz._rules import Rule
from salesauthz._wording import count, did_you_mean
from salesauthz.errors import UsageError
from salesauthz.scopes import Scope, ScopeKind

from .analysis import managed_by, needs_second_factor, second_factor_matters
from .fields_view import field_visibility
from .plain_words import permission_words
from .review import _CSS, FLAGS, flag_html, flags_legend_html

__all__ = [
    "DECISIONS",
    "ApplyReport",
    "CampaignFileError",
    "LineOutcome",
    "apply_campaign",
    "read_decision_log",
    "start_campaign",
]

MANIFEST = "campaign.json"
DECISIONS = ("undecided", "certify", "revoke")
FORMAT = 1
DAY = 24 * 3600.0

# Clean-up flags of a campaign line (weight, meaning), besides the report's FLAGS.
CLEANUP_FLAGS: dict[str, tuple[int, str]] = {
    "dormant": (15, "the account made no request in the decision log for the dormant period"),
    "expired": (0, "already ended: it gives nothing any more; revoke it to clean up"),
}

LineKey = tuple[str, ...]
"""``("role", account, role)`` or ``("grant", account, type, action, scope kind)``."""


# -- access lines ---------------------------------------------------------------------------


def access_lines(rules: Iterable[Rule], domain: str) -> dict[LineKey, list[Rule]]:
    """The domain's access, one entry per reviewable line, with the rules behind it: an
    account's role (its permanent ``g`` rule and its timed ``p8`` rules alike) or its direct
    grants of one ``type:action`` at one scope kind (a custom scope's departments together).
    Computed from the rules alone, so the start and the apply see lines the same way."""
    rules = [r for r in rules if R.domain_of(r) == domain]
    accounts = {r[1] for r in rules if r[0] == R.ACCOUNT}
    lines: dict[LineKey, list[Rule]] = {}
    for rule in rules:
        if rule[0] in (R.ROLE_LINK, R.TIMED_ROLE) and rule[1] in accounts:
            lines.setdefault(("role", rule[1], rule[2]), []).append(rule)
        elif rule[0] == R.PERMISSION and rule[1] in accounts:
            permission = engine.parse_permission(rule)
            key = ("grant", rule[1], permission.type, permission.action, permission.scope.kind.value)
            lines.setdefault(key, []).append(rule)
    return {key: sorted(found) for key, found in sorted(lines.items())}


def _expiries(rules: Sequence[Rule]) -> list[float | None]:
    found: list[float | None] = []
    for rule in rules:
        if rule[0] == R.TIMED_ROLE:
            found.append(R.parse_expiry(rule[4]))
        elif rule[0] == R.PERMISSION:
            found.append(R.parse_expiry(rule[6]) if rule[6] else None)
        else:
            found.append(None)  # a permanent role assignment
    return found


def _until(rules: Sequence[Rule]) -> float | None:
    """When the line's access ends: ``None`` if any of its rules is permanent, else the latest."""
    expiries = _expiries(rules)
    if any(e is None for e in expiries):
        return None
    return max(e for e in expiries if e is not None)


def _line_scope(key: LineKey, rules: Sequence[Rule]) -> Scope:
    kind = ScopeKind(key[4])
    if kind is ScopeKind.CUSTOM:
        return Scope(kind, frozenset(d for r in rules for d in engine.parse_permission(r).scope.departments))
    return Scope(kind)


def access_text(key: LineKey, rules: Sequence[Rule], now: float) -> str:
    """``role senior_rep``, ``role senior_rep until 2027-03-31T00:00:00Z``,
    ``grant customer:export@team until …`` (``expired at …`` once past)."""
    until = _until(rules)
    when = "" if until is None else (
        f" expired at {R.format_expiry_at(until)}" if until <= now else f" until {R.format_expiry_at(until)}")
    if key[0] == "role":
        return f"role {key[2]}{when}"
    return f"grant {key[2]}:{key[3]}@{_line_scope(key, rules)}{when}"


def explanation(snapshot: Snapshot, key: LineKey, rules: Sequence[Rule]) -> str:
    """What the line lets the account do, in plain words: ``may read, update customer records
    — on its own records and records in east-1`` (see :func:`.plain_words.permission_words`)."""
    account = key[1]
    if key[0] == "role":
        permissions = [h.permission for h in engine.role_holdings(snapshot, key[2])]
        inherited = sorted(snapshot.role_closure(key[2]) - {key[2]})
        through = f" (with what it inherits from {', '.join(inherited)})" if inherited else ""
        held = [(p.type, p.action, p.scope) for p in permissions]
    else:
        permissions = [engine.parse_permission(r) for r in rules]
        through = ""
        held = [(p.type, p.action, _line_scope(key, rules)) for p in permissions]
    words = permission_words(snapshot, account, held)
    if not words:
        return f"role {key[2]} gives no permission" if key[0] == "role" else "nothing"
    return words + through


def line_flags(snapshot: Snapshot, key: LineKey, rules: Sequence[Rule], now: float,
               expiring_days: float, dormant: frozenset[str]) -> tuple[list[str], int]:
    """The flags of one line and its risk weight (the weights of its flags plus the number of
    ``type:action`` pairs it gives, as in the report)."""
    if key[0] == "role":
        permissions = [h.permission for h in engine.role_holdings(snapshot, key[2])]
    else:
        permissions = [engine.parse_permission(r) for r in rules]
    keys = {k: p.scope for p in permissions for k in engine.expand(snapshot, p.type, p.action)}
    flags = []
    if ("role", "escalate") in keys:
        flags.append("escalate")
    if snapshot.account(key[1]).status != "active":
        flags.append("inactive-with-rights")
    if any(scope.kind is ScopeKind.ALL for k, scope in keys.items() if k != ("role", "escalate")):
        flags.append("all-scope")
    if ("account", "manage") in keys:
        flags.append("manages-accounts")
    if key[0] == "grant":
        flags.append("direct-grants")
    if second_factor_matters(snapshot) and any(
            k[1] == "export" and not needs_second_factor(scope) for k, scope in
           ((k, p.scope) for p in permissions for k in engine.expand(snapshot, p.type, p.action))):
        flags.append("export-without-mfa")
    until = _until(rules)
    if until is not None and until <= now:
        flags.append("expired")
    elif until is not None and until <= now + expiring_days * DAY:
        flags.append("expiring-soon")
    if key[1] in dormant:
        flags.append("dormant")
    weights = {**FLAGS, **CLEANUP_FLAGS}
    return flags, sum(weights[f][0] for f in flags) + len(keys)


# -- reviewers ------------------------------------------------------------------------------


def assign_reviewers(snapshot: Snapshot, accounts: Iterable[str], now: float,
                     default: str | None) -> dict[str, tuple[str | None, str]]:
    """account -> (its reviewer, why): its reporting superior when that is an active account,
    else its department head (see the module documentation), else ``default``."""
    active = {n for n, info in snapshot.accounts.items() if info.status == "active"}
    effective = {name: engine.effective(snapshot, name, now)[0] for name in sorted(active)}
    managers = managed_by(snapshot, effective)
    found: dict[str, tuple[str | None, str]] = {}
    for account in accounts:
        info = snapshot.account(account)
        if info.reports_to is not None and info.reports_to in active and info.reports_to != account:
            found[account] = (info.reports_to, "its reporting superior")
            continue
        head = department_head(snapshot, account, [m for m in managers.get(account, ()) if m != account])
        if head is not None:
            found[account] = (head, f"the head of {snapshot.department_of(head)} "
                                    "(account:manage over it, nearest up its department tree)")
        elif default is not None:
            found[account] = (default, "the default reviewer (no reporting superior or department head)")
        else:
            found[account] = (None, "no reporting superior or department head")
    return found


def department_head(snapshot: Snapshot, account: str, managers: Sequence[str]) -> str | None:
    """The manager whose main department is nearest up ``account``'s department tree."""
    home = snapshot.department_of(account)
    if home is None:
        return None
    for department in snapshot.ancestry(home):
        here = sorted(m for m in managers if snapshot.department_of(m) == department)
        if here:
            return here[0]
    return None


# -- the decision log -----------------------------------------------------------------------


@dataclass(slots=True)
class DecisionLogSummary:
    """The last decision time of each account of one domain, from a decision log file."""

    last: dict[str, float]
    first: float | None
    records: int
    skipped: int


def read_decision_log(path: Path, domain: str) -> DecisionLogSummary:
    """Read what :class:`~salesauthz.middleware.decision_log.DecisionLog` writes: one JSON
    object per log line (its message), possibly after a prefix a logging formatter added.
    Lines that hold no decision record are counted and skipped."""
    last: dict[str, float] = {}
    first: float | None = None
    records = skipped = 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read the decision log {path}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            skipped += bool(line.strip())
            continue
        try:
            record = json.loads(line[start:])
            moment = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError):
            skipped += 1
            continue
        if not isinstance(record, dict) or "decision_id" not in record:
            skipped += 1
            continue
        records += 1
        first = moment if first is None else min(first, moment)
        account = record.get("account")
        if record.get("domain") == domain and isinstance(account, str):
            last[account] = max(last.get(account, moment), moment)
    return DecisionLogSummary(last, first, records, skipped)


def dormant_accounts(snapshot: Snapshot, log: DecisionLogSummary | None, days: float,
                     now: float) -> tuple[frozenset[str], str]:
    """The active accounts that made no request for ``days`` days, and a sentence saying how
    that was decided (or why nobody is flagged)."""
    if log is None:
        return frozenset(), "no --decision-log given: no account is flagged dormant"
    cutoff = now - days * DAY
    if log.first is None:
        return frozenset(), "the decision log holds no decision record: no account is flagged dormant"
    if log.first > cutoff:
        return frozenset(), (f"the decision log starts at {R.format_expiry_at(log.first)}, less than "
                             f"{days:g} days ago, so it cannot show {days:g} days without a decision: "
                             "no account is flagged dormant")
    dormant = frozenset(name for name, info in snapshot.accounts.items()
                        if info.status == "active" and log.last.get(name, 0.0) < cutoff)
    return dormant, (f"{count(len(dormant), 'active account')} made no request in the last {days:g} "
                     f"days of the decision log ({count(log.records, 'record')} read"
                     + (f", {count(log.skipped, 'line')} skipped" if log.skipped else "") + ")")


# -- start ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Loaded:
    label: str
    rules: list[Rule]
    version: int | None


def load_source(source: str, domain: str) -> Loaded:
    """The domain's rules from a policy directory or a store URL (opened read-only)."""
    from salesauthz.errors import PolicyError, StorageError

    from .readonly import is_store

    if is_store(source):
        from salesauthz.adapters import mask_url

        from .readonly import open_read_only

        try:
            store = open_read_only(source)
            try:
                loaded = store.load_versioned([domain])
            finally:
                store.close()
        except (StorageError, PolicyError) as exc:
            raise UsageError(f"cannot open {mask_url(source)}: {exc}") from None
        return Loaded(mask_url(source), loaded.rules, loaded.versions.get(domain, 0))
    from salesauthz.models.loader import load_directory

    path = Path(source)
    if not path.exists():
        raise UsageError(f"{source} does not exist")
    if not path.is_dir():
        raise UsageError(f"{source} is not a directory (give a policy directory or a store URL)")
    try:
        rules = load_directory(source).rules
    except PolicyError as exc:
        raise UsageError(f"cannot load {source} (run `salesauthz check {source}`): {exc}") from None
    return Loaded(source, [r for r in rules if R.domain_of(r) == domain], None)


def rules_digest(rules: Iterable[Rule]) -> str:
    """A digest of a domain's rules (whatever order they were read in)."""
    text = "\n".join(json.dumps(list(r), ensure_ascii=False) for r in sorted(rules))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_stem(reviewer: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", reviewer).strip(".") or "reviewer"
    if stem != reviewer or stem.lower() in taken:
        stem += "-" + hashlib.sha256(reviewer.encode("utf-8")).hexdigest()[:8]
    taken.add(stem.lower())
    return stem


@dataclass(slots=True)
class Started:
    directory: Path
    manifest: dict[str, Any]
    notes: list[str]


def start_campaign(source: str, domain: str, out: Path, *, default_reviewer: str | None = None,
                   expiring_days: float = 30.0, dormant_days: float = 90.0,
                   decision_log: Path | None = None, now: float | None = None) -> Started:
    """Write a campaign for ``domain`` of ``source`` into the directory ``out``."""
    import time

    moment = time.time() if now is None else now
    loaded = load_source(source, domain)
    if not loaded.rules:
        raise UsageError(f"domain {domain!r} is not in {loaded.label}")
    snapshot = engine.compile_domains(loaded.rules)[domain]
    if default_reviewer is not None and snapshot.account(default_reviewer).status != "active":
        known = [n for n, i in snapshot.accounts.items() if i.status == "active"]
        close = did_you_mean(default_reviewer, known)
        raise UsageError(f"--default-reviewer {default_reviewer!r} is not an active account of domain "
                         f"{domain!r}" + (f": {close}" if close else ""))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty directory: a campaign is never written "
                         "over another")
    log = read_decision_log(decision_log, domain) if decision_log is not None else None
    dormant, dormant_note = dormant_accounts(snapshot, log, dormant_days, moment)
    lines = access_lines(loaded.rules, domain)
    accounts = sorted({key[1] for key in lines})
    reviewers = assign_reviewers(snapshot, accounts, moment, default_reviewer)
    orphans = sorted(a for a, (who, _) in reviewers.items() if who is None)
    if orphans:
        raise UsageError(f"no reviewer for {count(len(orphans), 'account')} "
                         f"({', '.join(orphans[:10])}{' …' if len(orphans) > 10 else ''}): they have "
                         "no reporting superior or department head; name one with --default-reviewer")
    entries: list[dict[str, Any]] = []
    for key, rules in lines.items():
        flags, risk = line_flags(snapshot, key, rules, moment, expiring_days, dormant)
        entries.append({"key": list(key), "rules": [list(r) for r in rules],
                        "account": key[1], "reviewer": reviewers[key[1]][0],
                        "access": access_text(key, rules, moment),
                        "explains": explanation(snapshot, key, rules), "risk": risk, "flags": flags})
    entries.sort(key=lambda e: (e["reviewer"], e["account"], -e["risk"], e["key"]))
    width = max(4, len(str(len(entries))))
    for number, entry in enumerate(entries, 1):
        entry["id"] = f"L{number:0{width}d}"
    created = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    taken: set[str] = set()
    reviewer_files = {}
    for reviewer in sorted({e["reviewer"] for e in entries}):
        stem = _file_stem(reviewer, taken)
        reviewer_files[reviewer] = {"file": f"{stem}.review.yaml", "html": f"{stem}.html"}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "domain": domain,
        "source": loaded.label,
        "store_version": loaded.version,
        "rules_digest": rules_digest(loaded.rules),
        "created": created,
        "created_at": moment,
        "expiring_days": expiring_days,
        "dormant": {"days": dormant_days, "decision_log": str(decision_log) if decision_log else None,
                    "accounts": sorted(dormant), "note": dormant_note},
        "reviewers": reviewer_files,
        "accounts": {a: {"reviewer": who, "because": why, "status": snapshot.account(a).status,
                         "department": snapshot.department_of(a),
                         "fields": field_visibility(snapshot, a, moment)}
                     for a, (who, why) in sorted(reviewers.items())},
        "lines": {e["id"]: {k: e[k] for k in ("reviewer", "account", "access", "explains", "risk",
                                              "flags", "key", "rules")} for e in entries},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for reviewer, names in reviewer_files.items():
        mine = [e for e in entries if e["reviewer"] == reviewer]
        (out / names["file"]).write_text(review_file_text(manifest, reviewer, mine), encoding="utf-8")
        decisions = {e["id"]: Decision(e["id"], "undecided", "", names["file"], 0) for e in mine}
        (out / names["html"]).write_text(review_page(manifest, reviewer, decisions, {}), encoding="utf-8")
    notes = [dormant_note]
    return Started(out, manifest, notes)


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is YAML's)."""
    return json.dumps(text, ensure_ascii=False)


def review_file_text(manifest: dict[str, Any], reviewer: str, entries: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"# Access review of domain {manifest['domain']}, started {manifest['created']} "
        f"from {manifest['source']}.",
        f"# Reviewer: {reviewer}. For each line set `decision:` to `certify` (keep it) or `revoke`",
        "# (take it away), and add a `comment:` if you like. Leave id, account and access as they are.",
        "# Then: salesauthz review apply <this directory> --url <the store>",
        f"reviewer: {_q(reviewer)}",
        f"domain: {_q(manifest['domain'])}",
        "lines:",
    ]
    current = None
    for entry in entries:
        if entry["account"] != current:
            current = entry["account"]
            about = manifest["accounts"][current]
            lines.append(f"  # {current} ({about['department'] or 'no department'}, {about['status']}): "
                         f"yours as {about['because']}")
        lines += [
            f"  - id: {entry['id']}",
            f"    account: {_q(entry['account'])}",
            f"    access: {_q(entry['access'])}",
            f"    explains: {_q(entry['explains'])}",
            f"    risk: {entry['risk']}",
            f"    flags: [{', '.join(entry['flags'])}]",
            "    decision: undecided",
            '    comment: ""',
        ]
    return "\n".join(lines) + "\n"


# -- reading review files -------------------------------------------------------------------


class CampaignFileError(UsageError):
    """Review files edited out of shape: ``errors`` are ``file:line: message`` strings."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(f"{count(len(errors), 'error')} in the review files; nothing was applied")
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class Decision:
    id: str
    decision: str
    comment: str
    file: str
    line: int


_KEYS = {"id", "account", "access", "explains", "risk", "flags", "decision", "comment"}


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{directory} holds no {MANIFEST}: not a review campaign "
                         "(start one with `salesauthz review start`)") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsageError(f"{path} is not a campaign manifest of format {FORMAT}")
    return manifest


def read_decisions(directory: Path, manifest: dict[str, Any]) -> dict[str, Decision]:
    """Every line's decision, from every reviewer's file; raises :class:`CampaignFileError`
    listing every problem (``file:line: message``) if any file is out of shape."""
    errors: list[str] = []
    found: dict[str, Decision] = {}
    for reviewer, names in manifest["reviewers"].items():
        name = names["file"]
        expected = [i for i, line in manifest["lines"].items() if line["reviewer"] == reviewer]
        errors += _read_file(directory / name, name, reviewer, manifest, set(expected), found)
    if errors:
        raise CampaignFileError(errors)
    return found


def _scalar(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _read_file(path: Path, name: str, reviewer: str, manifest: dict[str, Any], expected: set[str],
               found: dict[str, Decision]) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [f"{name}: cannot read it: {exc.strerror or exc}"]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        return [f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]

    def at(node: yaml.Node) -> str:
        return f"{name}:{node.start_mark.line + 1}"

    if not isinstance(root, yaml.MappingNode):
        return [f"{name}:1: expected a mapping with `reviewer:` and `lines:`"]
    top = {_scalar(k): (k, v) for k, v in root.value}
    errors = []
    if "reviewer" not in top or _scalar(top["reviewer"][1]) != reviewer:
        node = top["reviewer"][1] if "reviewer" in top else root
        errors.append(f"{at(node)}: this file is {reviewer}'s: `reviewer: {reviewer}` may not change")
    if "lines" not in top or not isinstance(top["lines"][1], yaml.SequenceNode):
        node = top["lines"][1] if "lines" in top else root
        return [*errors, f"{at(node)}: expected `lines:`, a list of review lines"]
    seen: set[str] = set()
    for item in top["lines"][1].value:
        if not isinstance(item, yaml.MappingNode):
            errors.append(f"{at(item)}: expected a review line (id, account, access, decision …)")
            continue
        fields = {}
        for key_node, value_node in item.value:
            key = _scalar(key_node)
            if key not in _KEYS:
                close = did_you_mean(str(key), _KEYS)
                errors.append(f"{at(key_node)}: unknown key {key!r}" + (f": {close}" if close else ""))
                continue
            fields[key] = value_node
        id_node = fields.get("id")
        line_id = _scalar(id_node) if id_node is not None else None
        if line_id is None or id_node is None:
            errors.append(f"{at(item)}: a review line without an `id:`")
            continue
        if line_id not in expected:
            where = manifest["lines"].get(line_id, {}).get("reviewer")
            errors.append(f"{at(id_node)}: line {line_id} is "
                          + (f"{where}'s, not {reviewer}'s" if where else "not a line of this campaign"))
            continue
        if line_id in seen:
            errors.append(f"{at(id_node)}: line {line_id} appears twice")
            continue
        seen.add(line_id)
        recorded = manifest["lines"][line_id]
        for key in ("account", "access"):
            node = fields.get(key)
            if node is None or _scalar(node) != recorded[key]:
                errors.append(f"{at(node if node is not None else item)}: the {key} of line {line_id} "
                              f"was changed (it is {recorded[key]!r}); only decision and comment may "
                              "be edited")
        decision_node = fields.get("decision")
        decision = _scalar(decision_node) if decision_node is not None else None
        if decision_node is None or decision not in DECISIONS:
            close = did_you_mean(str(decision), DECISIONS) if decision else None
            errors.append(f"{at(decision_node if decision_node is not None else item)}: line {line_id}: "
                          f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}"
                          + (f": {close}" if close else ""))
            continue
        comment_node = fields.get("comment")
        comment = ""
        if comment_node is not None:
            value = _scalar(comment_node)
            if value is None:
                errors.append(f"{at(comment_node)}: line {line_id}: a comment is text")
            elif comment_node.tag != "tag:yaml.org,2002:null":
                comment = value
        assert decision is not None
        found[line_id] = Decision(line_id, decision, comment, name, id_node.start_mark.line + 1)
    for missing in sorted(expected - seen):
        recorded = manifest["lines"][missing]
        errors.append(f"{name}:1: line {missing} ({recorded['account']} {recorded['access']}) is missing; "
                      "leave it `decision: undecided` instead of deleting it")
    return errors


# -- apply ----------------------------------------------------------------------------------

OUTCOMES = ("revoked", "certified", "refused", "stale", "undecided", "already-revoked")


@dataclass(frozen=True, slots=True)
class LineOutcome:
    id: str
    reviewer: str
    account: str
    access: str
    decision: str
    outcome: str  # one of OUTCOMES (``revoked`` also under --dry-run: "would be revoked")
    reason: str = ""

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "reviewer": self.reviewer, "account": self.account,
                "access": self.access, "decision": self.decision, "outcome": self.outcome,
                "reason": self.reason}


@dataclass(slots=True)
class ApplyReport:
    domain: str
    store: str
    dry_run: bool
    outcomes: list[LineOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self, reviewer: str | None = None) -> dict[str, int]:
        found = dict.fromkeys(OUTCOMES, 0)
        for outcome in self.outcomes:
            if reviewer is None or outcome.reviewer == reviewer:
                found[outcome.outcome] += 1
        return found

    @property
    def ok(self) -> bool:
        """Nothing undecided, refused or stale: every decision is carried out."""
        totals = self.counts()
        return not (totals["undecided"] or totals["refused"] or totals["stale"])


def _rule(values: Sequence[Any]) -> Rule:
    return tuple(str(v) for v in values)


def _certified_detail(manifest: dict[str, Any], line_id: str, line: dict[str, Any]) -> str:
    """What a certification's audit record says: the campaign (by its start), the line, the
    access kept."""
    return f"campaign of {manifest['created']}, line {line_id}: kept {line['access']}"


def _already_certified(audit: list[Any], reviewer: str, account: str, detail: str) -> bool:
    return any(record.actor == reviewer and record.target == account and record.operation == "certify"
               and record.detail == detail for record in audit)


class _NothingToCertify(Exception):
    pass


def _record_certifications(store: Any, domain: str,
                           certified: list[tuple[str, LineKey, set[Rule], Any]],
                           report: ApplyReport) -> None:
    """Write the certifications in one change, decided on the rules that change applies to (the
    store's transaction: re-run on newer rules if another process changed the domain since this
    apply read it). A line revoked or changed meanwhile is not certified: it is reported stale."""
    kept: set[str] = set()

    def plan(_: object) -> tuple[list[Rule], list[Rule], list[Any]]:
        held = access_lines(store.rules(domain), domain)
        kept.clear()
        kept.update(line_id for line_id, key, recorded, _ in certified
                    if set(held.get(key, ())) == recorded)
        if not kept:
            raise _NothingToCertify
        return [], [], [draft for line_id, _, _, draft in certified if line_id in kept]

    with contextlib.suppress(_NothingToCertify):
        store._transact(domain, plan)
    gone = {line_id for line_id, _, _, _ in certified} - kept
    report.outcomes = [replace(o, outcome="stale", reason="it changed while the campaign was applied")
                       if o.id in gone else o for o in report.outcomes]


def _already_revoked(audit: list[Any], reviewer: str, account: str, rules: set[Rule]) -> bool:
    return any(record.actor == reviewer and record.target == account and record.outcome == "applied"
               and record.operation in ("unassign_role", "revoke")
               and rules & {_rule(r) for r in record.removed} for record in audit)


def apply_campaign(directory: Path, url: str, *, dry_run: bool = False) -> ApplyReport:
    """Carry out the campaign's decisions in the store at ``url`` (see the module documentation).
    With ``dry_run``, the revocations are tried on an in-memory copy of the store's rules, by the
    same admin operations, and the store is left alone."""
    from salesauthz import Authorizer
    from salesauthz.adapters import mask_url
    from salesauthz.audit import AuditDraft
    from salesauthz.errors import ForbiddenError, PolicyError, StorageError, UnknownNameError

    from .readonly import open_read_only

    manifest = read_manifest(directory)
    decisions = read_decisions(directory, manifest)
    domain = manifest["domain"]
    try:
        open_read_only(url).close()  # a mistyped URL must not create an empty store
        store = Authorizer.from_url(url, domains=[domain])
    except (StorageError, PolicyError) as exc:
        raise UsageError(f"cannot open {mask_url(url)}: {exc}") from None
    try:
        if domain not in store.domains():
            raise UsageError(f"domain {domain!r} is not in {mask_url(url)}")
        report = ApplyReport(domain, mask_url(url), dry_run)
        rules = store.rules(domain)
        if rules_digest(rules) != manifest["rules_digest"]:
            report.notes.append("the domain's rules changed since the campaign started (its own "
                                "revocations included): each line is checked against what it was")
        target = Authorizer.from_rules(rules) if dry_run else store
        current = access_lines(rules, domain)
        audit = list(store.audit.query(domain=domain, since=float(manifest["created_at"])))
        by_reviewer = sorted(manifest["lines"].items(), key=lambda kv: (kv[1]["reviewer"], kv[0]))
        certified: list[tuple[str, LineKey, set[Rule], AuditDraft]] = []
        for line_id, line in by_reviewer:
            decided = decisions[line_id]
            reviewer, account = line["reviewer"], line["account"]

            def outcome(kind: str, reason: str = "", *, line: dict[str, Any] = line,
                        line_id: str = line_id, decided: Decision = decided) -> LineOutcome:
                return LineOutcome(line_id, line["reviewer"], line["account"], line["access"],
                                   decided.decision, kind, reason)

            if decided.decision == "undecided":
                report.outcomes.append(outcome("undecided"))
                continue
            key = tuple(line["key"])
            recorded = {_rule(r) for r in line["rules"]}
            now = set(current.get(key, ()))
            if now != recorded:
                if not now and decided.decision == "revoke" and _already_revoked(audit, reviewer, account,
                                                                                 recorded):
                    report.outcomes.append(outcome("already-revoked", "revoked by an earlier apply"))
                elif not now:
                    report.outcomes.append(outcome("stale", "it no longer exists"))
                else:
                    report.outcomes.append(outcome("stale", "it changed since the start: now "
                                                   + access_text(key, sorted(now), store.now())))
                continue
            if decided.decision == "certify":
                # On the audit trail as the reviewer's act (once, however often it is applied).
                detail = _certified_detail(manifest, line_id, line)
                if not dry_run and not _already_certified(audit, reviewer, account, detail):
                    certified.append((line_id, key, recorded, AuditDraft(
                        store.now(), reviewer, domain, "certify", account, detail=detail)))
                report.outcomes.append(outcome("certified"))
                continue
            admin = target.admin(reviewer, domain=domain)
            try:
                if key[0] == "role":
                    admin.unassign_role(account, key[2])
                else:
                    admin.revoke(account, key[2], [key[3]], scope=_line_scope(key, sorted(now)))
            except ForbiddenError as exc:
                report.outcomes.append(outcome("refused", str(exc)))
            except UnknownNameError as exc:
                # The line exists (checked above): the admin operation cannot remove it.
                report.outcomes.append(outcome("refused", f"the admin API cannot remove it: {exc}"))
            else:
                report.outcomes.append(outcome("revoked"))
        if certified:
            _record_certifications(store, domain, certified, report)
        if not dry_run:
            outcomes = {o.id: o for o in report.outcomes}
            for reviewer, names in manifest["reviewers"].items():
                mine = {i: d for i, d in decisions.items() if manifest["lines"][i]["reviewer"] == reviewer}
                (directory / names["html"]).write_text(
                    review_page(manifest, reviewer, mine, outcomes, applied=report), encoding="utf-8")
        return report
    finally:
        store.close()


def render_apply(report: ApplyReport) -> list[str]:
    """The text summary of an apply: each line that needs attention or changed, then counts per
    reviewer and in total."""
    verb = {"revoked": "would be revoked" if report.dry_run else "revoked",
            "refused": "refused", "stale": "stale"}
    out = [f"{'dry run: ' if report.dry_run else ''}campaign of domain {report.domain} applied to "
           f"{report.store}"]
    out += [f"note: {note}" for note in report.notes]
    for o in report.outcomes:
        if o.outcome in verb:
            reason = f": {o.reason}" if o.reason else ""
            out.append(f"  {o.id} {o.account} {o.access} — {verb[o.outcome]} (by {o.reviewer}){reason}")
    for reviewer in sorted({o.reviewer for o in report.outcomes}):
        out.append(f"{reviewer}: {_counts_text(report.counts(reviewer), report.dry_run)}")
    totals = report.counts()
    out.append(f"total: {_counts_text(totals, report.dry_run)}")
    if not totals["revoked"] and totals["already-revoked"]:
        out.append(f"nothing changed: {count(totals['already-revoked'], 'revocation')} of this campaign "
                   "had already been carried out")
    elif not totals["revoked"]:
        out.append("nothing changed" if not report.dry_run else "nothing would change")
    return out


def _counts_text(counts: dict[str, int], dry_run: bool) -> str:
    revoked = "would revoke" if dry_run else "revoked"
    text = (f"{counts['revoked']} {revoked}, {counts['certified']} certified, {counts['refused']} refused, "
            f"{counts['stale']} stale, {counts['undecided']} still undecided")
    if counts["already-revoked"]:
        text += f" ({counts['already-revoked']} revoked earlier)"
    return text


# -- HTML -----------------------------------------------------------------------------------

_PAGE_CSS = _CSS + """
.decision{font-weight:600} .decision-revoke{color:#b42318} .decision-certify{color:#067647}
.decision-undecided{color:#5b6474}
.outcome-refused,.outcome-stale{color:#b42318;font-weight:600}
"""


def review_page(manifest: dict[str, Any], reviewer: str, decisions: dict[str, Decision],
                outcomes: dict[str, LineOutcome], *, applied: ApplyReport | None = None) -> str:
    """One reviewer's lines and decisions (and, after an apply, what became of each), as one
    self-contained HTML page in the report's style. Everything shown is escaped."""
    e = html.escape
    lines = [(i, line) for i, line in manifest["lines"].items() if line["reviewer"] == reviewer]
    weights = {**FLAGS, **CLEANUP_FLAGS}
    rows = []
    tally = dict.fromkeys(DECISIONS, 0)
    for line_id, line in lines:
        decided = decisions.get(line_id)
        decision = decided.decision if decided is not None else "undecided"
        tally[decision] += 1
        level = "high" if line["risk"] >= 50 else "medium" if line["risk"] >= 15 else "low"
        flags = "".join(flag_html(f, weights) for f in line["flags"])
        done = outcomes.get(line_id)
        result = (f'<span class="outcome-{e(done.outcome)}">{e(done.outcome)}</span>'
                  + (f"<br>{e(done.reason)}" if done.reason else "")) if done is not None else ""
        comment = e(decided.comment) if decided is not None else ""
        rows.append(
            f'<tr class="{level}"><td>{e(line_id)}</td><td class="risk">{int(line["risk"])}</td>'
            f"<td>{e(line['account'])}</td><td><span class=\"perm\">{e(line['access'])}</span></td>"
            f"<td>{e(line['explains'])}</td><td>{flags}</td>"
            f'<td class="decision decision-{e(decision)}">{e(decision)}</td><td>{comment}</td>'
            f"<td>{result}</td></tr>")
    # What each account sees of the ruled fields (manifests from before it was recorded: nothing).
    accounts = []
    for account in sorted({line["account"] for _, line in lines}):
        about = manifest["accounts"].get(account, {})
        fields = "<br>".join(e(f) for f in about.get("fields", [])) or "<em>no ruled field it reads</em>"
        accounts.append(f"<tr><td>{e(account)}</td><td>{e(about.get('status') or '')}</td>"
                        f"<td>{e(about.get('department') or '')}</td><td>{fields}</td></tr>")
    title = f"Access review of {manifest['domain']}: {reviewer}"
    state = (f" · applied to {e(applied.store)}" if applied is not None else "")
    summary = "".join(f"<div><b>{n}</b> {e(d)}</div>" for d, n in tally.items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{e(title)}</title><style>{_PAGE_CSS}</style></head>"
        f"<body><h1>{e(title)}</h1>"
        f"<p class=\"meta\">Campaign started {e(manifest['created'])} from {e(manifest['source'])}{state}"
        f" · decisions from {e(manifest['reviewers'][reviewer]['file'])}</p>"
        f"<div class=\"summary\">{summary}</div>"
        "<table><thead><tr><th>line</th><th>risk</th><th>account</th><th>access</th>"
        "<th>what it allows</th><th>flags</th><th>decision</th><th>comment</th><th>outcome</th>"
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        "<h2>Field visibility</h2><table><thead><tr><th>account</th><th>status</th><th>department</th>"
        "<th>fields</th></tr></thead><tbody>" + "".join(accounts) + "</tbody></table>"
        "<h2>Flags and their risk weights</h2>"
        "<p class=\"meta\">A line's risk is the sum of its flags' weights plus one per permission "
        "it gives.</p>"
        + flags_legend_html(weights)
        + f"<p class=\"meta\">{e(manifest['dormant']['note'])}</p></body></html>\n"
    )
