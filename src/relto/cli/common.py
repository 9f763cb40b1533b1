"""What every relto command shares: the node options, the error shell, messages on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from relto.domain.errors import ReltoError

F = TypeVar("F", bound=Callable[..., Any])


def err(message: str) -> None:
    """A message for the human, on stderr (stdout carries only what scripts capture)."""
    click.echo(message, err=True)


def node_options(f: F) -> F:
    """--data and --database, shared by every command that opens a node."""
    f = click.option(
        "--database",
        envvar="RELTO_DATABASE_URL",
        help="Database URL (sqlite:///PATH); overrides --data. Env: RELTO_DATABASE_URL.",
    )(f)
    f = click.option(
        "--data",
        envvar="RELTO_DATA",
        type=click.Path(file_okay=False, path_type=Path),
        help="The node's data directory (holds relto.db). Env: RELTO_DATA.",
    )(f)
    return f


class ReltoGroup(click.Group):
    """Turns domain errors into one clear line and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReltoError as exc:
            err(f"Error: {exc.message}")
            sys.exit(2)
