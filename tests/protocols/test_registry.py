"""Driver lookup by name and by entry point."""

from __future__ import annotations

import subprocess
import sys
import types
from importlib.metadata import EntryPoint

import pytest

from protocols import registry
from protocols.driver import DriverOptions, DriverSpec
from protocols.transport import SerialSettings


def _plugin_module(monkeypatch: pytest.MonkeyPatch) -> DriverSpec:
    spec = DriverSpec(
        name="acme",
        summary="a third-party bootloader",
        serial=lambda o: SerialSettings(baud=o.baud, parity="E"),
        open=lambda transport, options: None,  # type: ignore[arg-type,return-value]
        probe_rank=5,
    )
    mod = types.ModuleType("acme_bl")
    mod.SPEC = spec  # type: ignore[attr-defined]
    mod.NOT_A_SPEC = object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "acme_bl", mod)
    return spec


def _entry_points(*eps: EntryPoint):  # type: ignore[no-untyped-def]
    def fake(group: str) -> tuple[EntryPoint, ...]:
        return eps if group == registry.ENTRY_POINT_GROUP else ()

    return fake


def test_builtin_driver_is_found_by_name() -> None:
    spec = registry.get("mcugw")
    assert spec.name == "mcugw"
    assert spec.serial(DriverOptions(baud=921600)) == SerialSettings(baud=921600)


def test_unknown_driver_names_the_known_ones() -> None:
    with pytest.raises(
        registry.UnknownDriver, match=r"unknown bootloader driver 'nope'; known: .*mcugw"
    ):
        registry.get("nope")


def test_entry_point_adds_a_driver_and_joins_the_probe_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _plugin_module(monkeypatch)
    monkeypatch.setattr(
        registry,
        "entry_points",
        _entry_points(EntryPoint("acme", "acme_bl:SPEC", registry.ENTRY_POINT_GROUP)),
    )
    assert registry.get("acme") is spec
    order = registry.probe_order()
    assert order[0] is spec  # rank 5 before mcugw's 10
    assert [s.name for s in registry.probe_order(["mcugw", "acme"])] == ["mcugw", "acme"]


def test_broken_plugins_are_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _plugin_module(monkeypatch)
    monkeypatch.setattr(
        registry,
        "entry_points",
        _entry_points(
            EntryPoint("gone", "no_such_module_xyz:SPEC", registry.ENTRY_POINT_GROUP),
            EntryPoint("odd", "acme_bl:NOT_A_SPEC", registry.ENTRY_POINT_GROUP),
        ),
    )
    names = set(registry.available())
    assert "mcugw" in names
    assert not names & {"gone", "odd"}
    text = caplog.text
    assert "'gone'" in text
    assert "failed to load" in text
    assert "'odd'" in text
    assert "not a DriverSpec" in text


def test_names_and_get_import_only_what_they_need() -> None:
    # Every CLI command builds the --bootloader help; that must not import every driver
    # (MCUboot's pulls in pydantic: a third of a second per command).
    code = (
        "import sys; from protocols import registry; "
        "assert {'mcugw', 'stm32-rom', 'mcuboot'} <= set(registry.names()); "
        "registry.get('mcugw'); "
        "print(sorted(m for m in sys.modules if m.startswith(('protocols.mcuboot', "
        "'protocols.stm32rom'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
