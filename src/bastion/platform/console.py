"""Where the `bastion` command and the appliance's processes print for a person to read."""

from __future__ import annotations

from rich.console import Console


def output_console() -> Console:
    """Rich output on a terminal. Into a pipe or a file (a service manager's journal, a log)
    each print is one plain line: not wrapped at 80 columns, no trailing spaces, no colour
    codes, so that a long path or a secret stays whole on its line."""
    console = Console()
    if not console.is_terminal:
        console.soft_wrap = True
    return console
