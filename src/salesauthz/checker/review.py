"""``salesauthz review``: the periodic access-review report of one domain.

Every account with its effective permissions and scopes and the flags a reviewer looks for,
riskiest first. Formats: Markdown, CSV, JSON and one self-contained HTML file (inline CSS, no
scripts, no external resources) a manager can open from a mail attachment.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from salesauthz import __version__
from salesauthz import _engine as engine
from salesauthz._engine import Snapshot

from .analysis import excess, exports_without_second_factor, held_scopes, second_factor_matters
from .fields_view import field_visibility
from .listings import Source, timed_roles, timed_roles_text, what_can_rows
from .plain_words import permission_words

__all__ = ["FLAGS", "Review", "ReviewRow", "build_review", "render_review"]

EXPIRY_WINDOW = 30 * 24 * 3600.0

# flag -> (risk weight, what it means)
FLAGS: dict[str, tuple[int, str]] = {
    "escalate": (50, "holds role:escalate: may grant anything to accounts it manages"),
    "inactive-with-rights": (30, "frozen or deactivated, yet still holding roles or grants"),
    "all-scope": (20, "holds a permission over every record of the domain"),
    "manages-accounts": (10, "holds account:manage: may administer other accounts"),
    "direct-grants": (8, "holds direct grants outside any role"),
    "department-grants": (4, "holds grants to its departments (sharing rules), outside any role"),
    "expiring-soon": (5, "a direct grant, a grant to its department or a timed role assignment "
                         "expires within 30 days"),
    "at-parent-ceiling": (3, "a sub-account whose own rights are cut by its parent's ceiling"),
    "export-without-mfa": (15, "may export records without a second factor (no requires: mfa; "
                              "only in a domain that lists sensitive_actions or requires mfa)"),
}


@dataclass(slots=True)
class ReviewRow:
    account: str
    status: str
    department: str
    parent: str
    roles: list[str]
    permissions: list[str]
    flags: list[str] = field(default_factory=list)
    risk: int = 0
    fields: list[str] = field(default_factory=list)  # what it sees of the ruled fields, and where
    also_in: list[str] = field(default_factory=list)  # auxiliary departments
    reports_to: str = ""  # reporting superior
    timed_roles: list[dict[str, Any]] = field(default_factory=list)  # role, until, expired
    explains: list[str] = field(default_factory=list)  # each permission in plain words, in order

    @property
    def timed_text(self) -> str:
        return timed_roles_text(self.timed_roles)

    def to_json(self) -> dict[str, Any]:
        return {"account": self.account, "status": self.status, "department": self.department or None,
                "also_in": self.also_in, "parent": self.parent or None,
                "reports_to": self.reports_to or None, "roles": self.roles,
                "timed_roles": self.timed_roles, "permissions": self.permissions,
                "flags": self.flags, "risk": self.risk, "fields": self.fields}


@dataclass(slots=True)
class Review:
    domain: str
    source: str
    generated: str
    rows: list[ReviewRow]


def review_snapshot(index: Snapshot, now: float, *, progress: Callable[[int, int], None] | None = None
                 ) -> list[ReviewRow]:
    rows = []
    names = sorted(n for n, info in index.accounts.items() if info.status is not None)
    strong_sessions = second_factor_matters(index)
    for done, name in enumerate(names, 1):
        info = index.account(name)
        effective = engine.effective(index, name, now)[0]
        flags = []
        if ("role", "escalate") in effective:
            flags.append("escalate")
        live_grants = [g for g in info.grants if not engine.expired(g.expires, now)]
        live_timed = [until for _, until in info.timed_roles if not engine.expired(until, now)]
        if info.status != "active" and (info.roles or live_grants or live_timed):
            flags.append("inactive-with-rights")
        if any(c.everything for k, c in effective.items() if k != ("role", "escalate")):
            flags.append("all-scope")
        if ("account", "manage") in effective:
            flags.append("manages-accounts")
        if live_grants:
            flags.append("direct-grants")
        granted = [g for department in index.granting(name)
                   for g in index.department_grants[department] if not engine.expired(g.expires, now)]
        if granted:
            flags.append("department-grants")
        if any(g.expires is not None and now < g.expires <= now + EXPIRY_WINDOW
               for g in (*live_grants, *granted)) \
                or any(until <= now + EXPIRY_WINDOW for until in live_timed):
            flags.append("expiring-soon")
        if info.parent is not None and info.status == "active":
            own = engine.own_map(index, name, now)[0]
            if any(excess(coverage, effective.get(key), index) for key, coverage in own.items()):
                flags.append("at-parent-ceiling")
        if info.status == "active" and strong_sessions \
                and exports_without_second_factor(index, name, now, effective):
            flags.append("export-without-mfa")
        held = what_can_rows(index, name, now)
        permissions = [r["text"] for r in held]
        explains = [permission_words(index, name, [(r["type"], r["action"], scope) for scope in
                                                   held_scopes(index, name, (r["type"], r["action"]), now)])
                    for r in held]
        risk = sum(FLAGS[f][0] for f in flags) + len(permissions)
        rows.append(ReviewRow(name, info.status or "", info.department or "", info.parent or "",
                              sorted(info.roles), permissions, flags, risk,
                              field_visibility(index, name, now) if permissions else [],
                              sorted(info.also_in), info.reports_to or "",
                              timed_roles(index, name, now), explains))
        if progress is not None and done % 100 == 0:
            progress(done, len(names))
    if progress is not None:
        progress(len(names), len(names))
    return sorted(rows, key=lambda r: (-r.risk, r.account))


def build_review(source: Source, domain: str, *, progress: Callable[[int, int], None] | None = None
                 ) -> Review:
    index = source.snapshot(domain)
    now = source.now
    generated = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Review(domain, source.label, generated, review_snapshot(index, now, progress=progress))


def render_review(review: Review, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"domain": review.domain, "source": review.source, "generated": review.generated,
                           "flags": {k: v[1] for k, v in FLAGS.items()},
                           "accounts": [r.to_json() for r in review.rows]}, indent=2, ensure_ascii=False)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["risk", "account", "status", "department", "also_in", "parent", "reports_to",
                         "roles", "timed_roles", "flags", "permissions", "fields"])
        for row in review.rows:
            # Permissions are joined with "; " (one may carry its expiry, which has spaces).
            writer.writerow([row.risk, row.account, row.status, row.department, " ".join(row.also_in),
                             row.parent, row.reports_to, " ".join(row.roles),
                             "; ".join(row.timed_text.split(", ")) if row.timed_roles else "",
                             " ".join(row.flags), "; ".join(row.permissions), "; ".join(row.fields)])
        return buffer.getvalue()
    if fmt == "html":
        return _html(review)
    return _markdown(review)


def _department_text(row: ReviewRow) -> str:
    """``east-1 (also in service)``."""
    also = f" (also in {', '.join(row.also_in)})" if row.also_in else ""
    return row.department + also


def _roles_text(row: ReviewRow) -> str:
    """``rep, senior_rep until 2027-03-31T00:00:00Z``."""
    return ", ".join([*row.roles, *([row.timed_text] if row.timed_roles else [])])


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _markdown(review: Review) -> str:
    lines = [f"# Access review: {_md(review.domain)}", "",
             f"Source: `{review.source}` · generated {review.generated} · {len(review.rows)} accounts, "
             "riskiest first.", "",
             "| risk | account | status | department | parent | reports to | roles | flags "
             "| effective permissions | fields |",
             "|---:|---|---|---|---|---|---|---|---|---|"]
    for row in review.rows:
        cells = [str(row.risk), row.account, row.status, _department_text(row), row.parent,
                 row.reports_to, _roles_text(row), ", ".join(row.flags),
                 "<br>".join(row.permissions) or "(nothing)", "<br>".join(row.fields)]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    lines += ["", "Flags:", ""]
    lines += [f"- **{name}** — {meaning}" for name, (_, meaning) in FLAGS.items()]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1d2430;
background:#fff}
h1{font-size:1.5rem;margin:0 0 .25rem}
p.meta{color:#5b6474;margin:0 0 1.25rem}
table{border-collapse:collapse;width:100%;font-size:.875rem}
th,td{border-bottom:1px solid #e3e7ee;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f6fa;position:sticky;top:0}
td.risk{font-weight:700;text-align:right}
tr.high td.risk{color:#b42318} tr.medium td.risk{color:#b54708} tr.low td.risk{color:#067647}
.flag{display:inline-block;white-space:nowrap;border-radius:999px;padding:.05rem .5rem;margin:.1rem;
font-size:.75rem;
background:#fef3f2;color:#b42318;border:1px solid #fecdca}
.perm{display:inline-block;font-family:ui-monospace,Menlo,monospace;font-size:.75rem;margin:.05rem .2rem}
.status-frozen,.status-deactivated{color:#b42318;font-weight:600}
.summary{display:flex;gap:1rem;margin-bottom:1rem}
.summary div{background:#f4f6fa;border-radius:8px;padding:.5rem .9rem}
dl{font-size:.85rem;color:#3b4352} dt{font-weight:600}
ul.perms{margin:0;padding-left:1rem} ul.perms li{margin:.1rem 0}
.flag b.weight{font-weight:700}
"""


def flag_html(name: str, weights: dict[str, tuple[int, str]]) -> str:
    """A flag as a pill with its risk weight, its meaning as the tooltip (escaped)."""
    weight, meaning = weights[name]
    return (f'<span class="flag" title="{html.escape(meaning)}">{html.escape(name)} '
            f'<b class="weight">+{weight}</b></span>')


def flags_legend_html(weights: dict[str, tuple[int, str]]) -> str:
    """Every flag with its risk weight and meaning."""
    e = html.escape
    return "<dl>" + "".join(f"<dt>{e(n)} (weight {w})</dt><dd>{e(m)}</dd>"
                            for n, (w, m) in weights.items()) + "</dl>"


def permissions_html(codes: list[str], words: list[str]) -> str:
    """Each permission in plain words, with its code (scope, cap and expiry) beside it."""
    e = html.escape
    items = []
    for i, code in enumerate(codes):
        plain = f"{e(words[i])} " if i < len(words) and words[i] else ""
        items.append(f'<li>{plain}<span class="perm">{e(code)}</span></li>')
    return f'<ul class="perms">{"".join(items)}</ul>' if items else "<em>nothing</em>"


def _html(review: Review) -> str:
    e = html.escape
    flagged = sum(1 for r in review.rows if r.flags)
    inactive = sum(1 for r in review.rows if "inactive-with-rights" in r.flags)
    body = []
    for row in review.rows:
        level = "high" if row.risk >= 50 else "medium" if row.risk >= 15 else "low"
        flags = "".join(flag_html(f, FLAGS) for f in row.flags)
        perms = permissions_html(row.permissions, row.explains)
        fields = "<br>".join(e(f) for f in row.fields)
        body.append(
            f'<tr class="{level}"><td class="risk">{row.risk}</td><td>{e(row.account)}</td>'
            f'<td class="status-{e(row.status)}">{e(row.status)}</td><td>{e(_department_text(row))}</td>'
            f"<td>{e(row.parent)}</td><td>{e(row.reports_to)}</td><td>{e(_roles_text(row))}</td>"
            f"<td>{flags}</td>"
            f"<td>{perms}</td><td>{fields}</td></tr>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Access review: {e(review.domain)}</title>"
        f"<meta name=\"generator\" content=\"salesauthz {e(__version__)}\"><style>{_CSS}</style></head>"
        f"<body><h1>Access review: {e(review.domain)}</h1>"
        f"<p class=\"meta\">Source {e(review.source)} · generated {e(review.generated)} · riskiest first</p>"
        f"<div class=\"summary\"><div><b>{len(review.rows)}</b> accounts</div>"
        f"<div><b>{flagged}</b> flagged</div><div><b>{inactive}</b> inactive with rights</div></div>"
        "<table><thead><tr><th>risk</th><th>account</th><th>status</th><th>department</th>"
        "<th>parent</th><th>reports to</th><th>roles</th><th>flags</th><th>effective permissions</th>"
        "<th>fields</th>"
        "</tr></thead><tbody>"
        + "".join(body) + "</tbody></table><h2>Flags and their risk weights</h2>"
        "<p class=\"meta\">An account's risk is the sum of its flags' weights plus one per permission.</p>"
        + flags_legend_html(FLAGS) + "</body></html>\n"
    )
