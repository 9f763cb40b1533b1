"""`python -m relto` runs the CLI."""

from relto.cli import main

main()
