"""Writing policy documents as files (``salesauthz export`` and ``import --from-casbin``)."""

from __future__ import annotations

import hashlib
import re
from typing import Final

from .documents import DomainDocument

__all__ = ["document_file_name", "document_yaml"]

_PLAIN_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")


def document_file_name(domain: str) -> str:
    """A safe file name for a domain's document (the document itself carries the real name)."""
    if _PLAIN_NAME.match(domain) and not domain.endswith((".test", ".test.yaml")):
        return f"{domain}.yaml"
    return "domain-" + hashlib.sha256(domain.encode("utf-8")).hexdigest()[:12] + ".yaml"


def document_yaml(document: DomainDocument) -> str:
    """The document as YAML that ``salesauthz import`` reads back exactly."""
    import yaml

    data = document.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    body = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1_000_000)
    return "# Exported by `salesauthz export`; `salesauthz import` restores it exactly.\n" + body
