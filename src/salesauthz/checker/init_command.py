"""``salesauthz init``: scaffold a starter policy directory."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the ``salesauthz`` parser."""
