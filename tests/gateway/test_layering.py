"""The CLI sits on top: nothing in the gateway's core imports it (the facts rendering lives
in gateway/facts.py, shared by `info` and the getInfo direct method)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_the_core_never_imports_the_cli() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imports(path) if m.startswith("gateway.cli")
        )
        for path in (ROOT / "gateway").rglob("*.py")
        if "cli" not in path.relative_to(ROOT / "gateway").parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_info_and_get_info_render_facts_alike() -> None:
    from gateway import agent
    from gateway.cli import info
    from gateway.facts import facts_dict

    assert info.facts_dict is facts_dict
    assert "gateway.facts" in _imports(Path(agent.__file__))
