"""``[adu]`` in the gateway's configuration: which MCUs take their updates from ADU.

An MCU takes updates from exactly one master: ADU (this section) or the twin's
``firmware`` section (the default). ``ports`` (globs, as in ``[serial]``) and
``models`` select the ADU ones; the twin's ``firmware`` desired section is then
ignored for them, so two masters can never fight over one MCU.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from gateway.confread import Table

#: ADU's compatibility properties for every MCU: the reference agent's default
#: (startup_msg_helper.c, DEFAULT_COMPAT_PROPERTY_NAMES_VALUE).
COMPAT_PROPERTY_NAMES = "manufacturer,model"


@dataclass(frozen=True)
class AduSettings:
    ports: tuple[str, ...] = ()  # MCUs on ports matching these globs are ADU devices
    models: tuple[str, ...] = ()  # MCUs of these models are ADU devices
    #: A JWK set of test root keys to trust besides Microsoft's (the emulator's);
    #: None: production root keys only, as a real ADU instance signs.
    test_root_keys_file: Path | None = None
    #: ``installedUpdateId`` of an MCU flashed before ADU knew it (factory images):
    #: provider, and the update name per MCU model (default: the model itself).
    provider: str | None = None
    names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def active(self) -> bool:
        return bool(self.ports or self.models)

    def selects(self, port: str, model: str) -> bool:
        """Is the MCU on ``port`` of ``model`` an ADU device (rather than twin-driven)?"""
        return model in self.models or any(fnmatch.fnmatchcase(port, p) for p in self.ports)

    def update_name(self, model: str) -> str:
        return self.names.get(model, model)


def adu_settings(t: Table) -> AduSettings:
    keys_file: Path | None = t.path("test_root_keys_file", None)
    if keys_file is not None and not keys_file.is_file():
        raise t.error("test_root_keys_file", f"{keys_file} is not a readable file")
    names = t.scalars("names")
    for model, name in names.items():
        if not isinstance(name, str) or not name:
            raise t.error(f"names.{model}", "expected an update name (a non-empty string)")
    settings = AduSettings(
        ports=tuple(p if "://" in p else str(t.resolve(p)) for p in t.strings("ports", ())),
        models=t.strings("models", ()),
        test_root_keys_file=keys_file,
        provider=t.text("provider", None),
        names=MappingProxyType({k: str(v) for k, v in names.items()}),
    )
    t.finish()
    return settings
