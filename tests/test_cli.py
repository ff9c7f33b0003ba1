from __future__ import annotations

import argparse

import pytest

from gateway.cli import build_parser, main

COMMANDS = (
    "sim", "ports", "info", "flash", "reset", "abort", "conformance", "image", "hub", "run",
    "fleet", "adu", "demo",
)  # fmt: skip


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_is_registered_and_runnable() -> None:
    # The parser's real choices, not its help text: a dropped command cannot hide in prose.
    commands = _subcommands(build_parser())
    assert sorted(commands) == sorted(COMMANDS)
    for name, sub in commands.items():
        # A command runs something itself or through its own sub-commands (image keygen ...).
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        runners = [p.get_default("func") for a in nested for p in a.choices.values()]
        assert callable(sub.get_default("func")) or (runners and all(map(callable, runners))), name


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_answers_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: mcu-gateway {name}")


def test_unknown_command_exits_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code != 0
    assert "invalid choice" in capsys.readouterr().err


def test_errors_on_the_command_line_do_not_show_url_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import common, info

    def fail(args: argparse.Namespace) -> int:
        raise common.CommandError("cannot fetch https://user:s3cr3t@cdn.example/a.bin?sig=s3cr3t")

    monkeypatch.setattr(info, "_run", fail)
    assert main(["info", "--port", "/dev/null"]) == 1
    err = capsys.readouterr().err
    assert "https://***@cdn.example/a.bin?***" in err
    assert "s3cr3t" not in err
