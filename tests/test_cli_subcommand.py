"""Sub-commands documented by their module's docstring (cybloid.cli.subcommand)."""

import argparse

import pytest

from cybloid.cli import build_parser
from cybloid.cli.subcommand import add_subcommand

DOC = """``cybloid thing FILE``: do the thing to a file.

The thing, done to FILE
with care.
"""


def test_short_help_and_description_come_from_the_docstring():
    parser = argparse.ArgumentParser(prog="cybloid")
    p = add_subcommand(parser.add_subparsers(), "thing", DOC)
    assert p.description == "The thing, done to FILE with care."
    assert "do the thing to a file" in parser.format_help()


def test_a_docstring_without_a_description_is_refused_and_none_is_accepted():
    sub = argparse.ArgumentParser(prog="cybloid").add_subparsers()
    with pytest.raises(ValueError, match="cybloid thing"):
        add_subcommand(sub, "thing", "``cybloid thing``: only a line.")
    assert add_subcommand(sub, "other", None).description is None  # python -OO strips docstrings


@pytest.mark.parametrize("name", ["run", "export", "replay"])
def test_commands_show_their_module_description(name, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([name, "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    first = {"run": "Run a protocol (bundled name", "export": "Export the tracks of a recorded session",
             "replay": "Re-run a recorded session"}[name]
    assert first in out
