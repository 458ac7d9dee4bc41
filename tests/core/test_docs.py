"""docs/ARCHITECTURE.md stays true to the code: every RunConfig key and every command is
in it (a key added without its documentation fails here)."""

from pathlib import Path

from playground.core.config import KEYS

DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


def test_every_spec_key_is_in_the_key_table():
    table = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    documented = {key.strip() for line in table for key in line.split("|")[1].split(",")}
    missing = [key for key in KEYS if key not in documented]
    assert not missing, f"add to docs/ARCHITECTURE.md's key table: {missing}"


def test_every_command_is_named():
    import argparse

    from playground import cli

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    line = next(ln for ln in DOC.read_text().splitlines() if "`playground` command:" in ln)
    missing = [name for name in commands.choices if name not in line]
    assert not missing, f"add to docs/ARCHITECTURE.md's command line: {missing}"
