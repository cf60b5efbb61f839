"""Pydantic models of policy documents, and their loading, validation and compilation."""

from ._yaml import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from .compile import compile_document, decompile_rules
from .documents import (
    AccountDocument,
    CustomScope,
    DepartmentDocument,
    DomainDocument,
    PermissionSet,
    RoleDocument,
)
from .loader import LoadedPolicy, load_directory

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "AccountDocument",
    "CustomScope",
    "DepartmentDocument",
    "DomainDocument",
    "LoadedPolicy",
    "PermissionSet",
    "RoleDocument",
    "compile_document",
    "decompile_rules",
    "load_directory",
]
