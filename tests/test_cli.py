from __future__ import annotations

import pytest

from gateway.cli import build_parser, main


def test_every_command_is_registered() -> None:
    parser = build_parser()
    help_text = parser.format_help()
    for name in ("sim", "info", "flash", "image", "hub", "run", "demo"):
        assert name in help_text


def test_unknown_command_exits_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code != 0
