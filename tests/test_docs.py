"""Documentation that cannot drift: the CLI reference is generated from --help; settings are documented.

Regenerate docs/cli.md with: python tests/test_docs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

from relto.cli import main
from relto.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
CLI_DOC = ROOT / "docs" / "cli.md"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [prefix]
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            out.extend(_commands(command, (*prefix, name)))
        else:
            out.append((*prefix, name))
    return out


def cli_reference() -> str:
    parts = ["# CLI reference\n\nGenerated from `relto --help` by `python tests/test_docs.py`; do not edit by hand.\n"]
    for path in _commands(main):
        result = CliRunner(env={"COLUMNS": "100"}).invoke(
            main, [*path, "--help"], prog_name="relto", terminal_width=100
        )
        title = " ".join(("relto", *path))
        parts.append(f"\n## {title}\n\n```\n{result.output.rstrip()}\n```\n")
    return "".join(parts)


def test_cli_reference_is_current() -> None:
    assert CLI_DOC.read_text() == cli_reference(), "docs/cli.md is stale: run python tests/test_docs.py"


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for setting in SETTINGS:
        assert f"RELTO_{setting.name.upper()}" in text, f"{setting.name} is not in docs/configuration.md"


def test_readme_has_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in text.split("```sh\n")[1:3]]
    assert blocks[0].endswith("relto demo")
    assert blocks[1].endswith("pytest")


if __name__ == "__main__":
    CLI_DOC.write_text(cli_reference())
    sys.exit(0)
