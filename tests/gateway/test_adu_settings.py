"""``[adu]``: which MCUs ADU updates; errors name the file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.gateway.test_config import BASE, home, write

__all__ = ["home"]  # the fixture, shared with test_config


def test_default_is_twin_only(home: Path) -> None:
    cfg = load_config(write(home, BASE))
    assert not cfg.adu.active
    assert not cfg.adu.selects("/dev/ttyUSB0", "vmcu-f4")


def test_ports_and_models_select_adu(home: Path) -> None:
    (home / "roots.json").write_text(json.dumps({"keys": []}))
    text = BASE + (
        '[adu]\nports = ["/dev/ttyADU*"]\nmodels = ["vmcu-f4"]\nprovider = "contoso"\n'
        'test_root_keys_file = "roots.json"\n[adu.names]\nvmcu-f4 = "sensor-app"\n'
    )
    cfg = load_config(write(home, text))
    assert cfg.adu.selects("/dev/ttyADU3", "stm32f4")
    assert cfg.adu.selects("/dev/ttyUSB0", "vmcu-f4")
    assert not cfg.adu.selects("/dev/ttyUSB0", "stm32f4")
    assert cfg.adu.update_name("vmcu-f4") == "sensor-app"
    assert cfg.adu.update_name("stm32f4") == "stm32f4"
    assert cfg.adu.test_root_keys_file == home / "roots.json"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[adu]\nmodels = "vmcu-f4"\n', "adu.models"),
        ('[adu]\ntest_root_keys_file = "missing.json"\n', "adu.test_root_keys_file"),
        ('[adu]\nmodle = ["x"]\n', "adu.modle"),
        ("[adu.names]\nvmcu-f4 = 3\n", "adu.names.vmcu-f4"),
    ],
)
def test_errors_name_the_key(home: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(home, BASE + text))
    assert info.value.key == key
