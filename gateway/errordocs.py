"""Renders the error-code and kind tables of the docs from the code registry.

::

    python -m gateway.errordocs            # print the code table
    python -m gateway.errordocs --write    # rewrite the generated blocks of the docs
    python -m gateway.errordocs --check    # exit 1 if they are stale (a test runs this)

Each generated block sits between ``<!-- BEGIN GENERATED name ... -->`` and
``<!-- END GENERATED name -->`` markers; text around them is left alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.codes import BUILTIN_TABLES, load_builtin
from protocols.failures import Kind, families, tables

BEGIN = "<!-- BEGIN GENERATED {name}: python -m gateway.errordocs --write -->"
END = "<!-- END GENERATED {name} -->"

#: file (relative to the repository) -> generated block name -> renderer
DOCS = {"docs/errors.md": ("codes", "kinds"), "README.md": ("kinds",)}


def render_kinds() -> str:
    rows = ["| kind | retried by itself | meaning |", "|---|---|---|"]
    for kind in Kind:
        if kind is Kind.NONE:
            continue
        rows.append(f"| `{kind}` | {'yes' if kind.transient else 'no'} | {kind.meaning} |")
    return "\n".join(rows)


def render_codes() -> str:
    load_builtin()
    order = {module: i for i, module in enumerate(BUILTIN_TABLES)}
    rows = ["| code | kind | raised by | meaning |", "|---|---|---|---|"]
    for table in sorted(tables(), key=lambda t: order.get(t.__module__, len(order))):
        origin = table.origin()
        for member in table:
            if member.kind is not Kind.NONE:
                rows.append(f"| `{member}` | `{member.kind}` | {origin} | {member.meaning} |")
        for family in families():
            if family.origin == origin:
                rows.append(
                    f"| `{family.example}` | `{family.kind}` | {origin} | {family.meaning} |"
                )
    return "\n".join(rows)


RENDER = {"codes": render_codes, "kinds": render_kinds}


def regenerate(text: str, names: Sequence[str], where: str) -> str:
    """``text`` with each named generated block replaced by a fresh rendering."""
    for name in names:
        begin, end = BEGIN.format(name=name), END.format(name=name)
        head, sep, rest = text.partition(begin)
        if not sep:
            raise ValueError(f"{where}: no {begin!r} marker")
        _, sep, tail = rest.partition(end)
        if not sep:
            raise ValueError(f"{where}: no {end!r} marker")
        text = f"{head}{begin}\n{RENDER[name]()}\n{end}{tail}"
    return text


def stale(root: Path) -> list[str]:
    """Documentation files whose generated blocks differ from the code tables."""
    out = []
    for rel, names in DOCS.items():
        path = root / rel
        text = path.read_text(encoding="utf-8")
        if regenerate(text, names, rel) != text:
            out.append(rel)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.errordocs", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the docs' generated blocks")
    mode.add_argument("--check", action="store_true", help="exit 1 if the docs are stale")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    if not args.write and not args.check:
        print(render_codes())
        return 0
    if args.check:
        bad = stale(args.root)
        for rel in bad:
            print(f"{rel}: error-code table is stale; run python -m gateway.errordocs --write",
                  file=sys.stderr)  # fmt: skip
        return 1 if bad else 0
    for rel, names in DOCS.items():
        path = args.root / rel
        path.write_text(regenerate(path.read_text(encoding="utf-8"), names, rel), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
