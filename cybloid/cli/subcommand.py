"""Sub-commands whose help text is their module's docstring (one text for ``--help`` and for readers)."""

from __future__ import annotations

import argparse


def add_subcommand(sub: argparse._SubParsersAction, name: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``cybloid NAME``, documented by ``doc`` (the command module's ``__doc__``).

    ``doc`` reads ``"``cybloid NAME ...``: short help.`` then, after a blank line, the description:
    the short help is what ``cybloid --help`` lists, the description what ``cybloid NAME --help`` shows.
    """
    if not doc:  # python -OO strips docstrings: the command still works, undocumented
        return sub.add_parser(name)
    first, _, rest = doc.strip().partition("\n\n")
    usage, sep, short = " ".join(first.split()).partition(": ")
    if not sep or not rest.strip():
        raise ValueError(f"cybloid {name}: the module docstring needs '``usage``: help.' and a description")
    return sub.add_parser(name, help=short.rstrip("."), description=" ".join(rest.split()))
