"""Typed, key-tracking access to one TOML table, for :mod:`gateway.config`.

Every getter raises :class:`ConfigError` naming the file, the dotted key and
what was expected; :meth:`Table.finish` refuses keys nobody asked for, so a
typo (``grup_key_file``) is an error instead of a silently ignored setting.
Secret values are read here and wrapped at once; no message ever quotes them.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeVar

from gateway.errors import ConfigError
from gateway.secret import Secret

E = TypeVar("E", bound=Enum)
T = TypeVar("T")
_MISSING: Final = object()
MAX_SECRET_BYTES = 64 * 1024  # a key or connection string; anything bigger is a wrong file


class Table:
    """One ``[section]`` (or nested table) of a config file."""

    def __init__(
        self, file: Path, prefix: str, data: Mapping[str, Any], environ: Mapping[str, str]
    ) -> None:
        self.file = file
        self.prefix = prefix
        self._data = data
        self._used: set[str] = set()
        self._environ = environ

    # ------------------------------------------------------------ plumbing

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str | None, message: str) -> ConfigError:
        return ConfigError(str(self.file), self.key(name) if name else self.prefix or None, message)

    def has(self, name: str) -> bool:
        return name in self._data

    def _get(self, name: str, default: object) -> object:
        self._used.add(name)
        if name in self._data:
            return self._data[name]
        if default is _MISSING:
            raise self.error(name, "is required")
        return default

    def finish(self) -> None:
        unknown = sorted(set(self._data) - self._used)
        if unknown:
            raise self.error(unknown[0], "unknown key (check the spelling)")

    def tables(self, name: str) -> tuple[Table, ...]:
        """An array of tables (``[[name]]``), each checked like a table."""
        value = self._get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, f"expected an array of tables, got {_kind(value)}")
        return tuple(
            Table(self.file, f"{self.key(name)}[{i}]", v, self._environ)
            for i, v in enumerate(value)
        )

    def scalars(self, name: str) -> dict[str, str | int | bool]:
        """A table of plain values (strings, integers, booleans), e.g. driver options."""
        value = self._get(name, {})
        if not isinstance(value, dict):
            raise self.error(name, f"expected a table, got {_kind(value)}")
        for key, item in value.items():
            if not isinstance(item, str | int | bool) or isinstance(item, float):
                raise self.error(f"{name}.{key}", f"expected a string, integer or boolean, "
                                 f"got {_kind(item)}")  # fmt: skip
        return dict(value)

    def table(self, name: str) -> Table:
        value = self._get(name, {})
        if not isinstance(value, dict):
            raise self.error(name, f"expected a table, got {_kind(value)}")
        return Table(self.file, self.key(name), value, self._environ)

    # ------------------------------------------------------------ scalars

    def text(self, name: str, default: object = _MISSING, *, nonempty: bool = True) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_kind(value)}")
        if nonempty and not value.strip():
            raise self.error(name, "expected a non-empty string")
        return value

    def integer(
        self, name: str, default: object = _MISSING, *, low: int = 0, high: int | None = None
    ) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, f"expected an integer, got {_kind(value)}")
        _check_range(self, name, value, low, high)
        return value

    def number(
        self, name: str, default: object = _MISSING, *, low: float = 0.0, high: float | None = None
    ) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.error(name, f"expected a number, got {_kind(value)}")
        if not math.isfinite(value):  # TOML has nan and inf; no setting means either
            raise self.error(name, f"expected a finite number, got {value}")
        _check_range(self, name, value, low, high)
        return float(value)

    def flag(self, name: str, default: object = _MISSING) -> Any:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {_kind(value)}")
        return value

    def choice(self, name: str, cls: type[E], default: object = _MISSING) -> E:
        value = self._get(name, default)
        if isinstance(value, cls):
            return value
        choices = " | ".join(repr(m.value) for m in cls)
        try:
            return cls(value)
        except ValueError:
            raise self.error(name, f"expected one of {choices}, got {value!r:.40}") from None

    def strings(self, name: str, default: object = _MISSING) -> tuple[str, ...]:
        value = self._get(name, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.error(name, f"expected a list of strings, got {_kind(value)}")
        return tuple(value)

    def path(self, name: str, default: object = _MISSING) -> Any:
        """A path; relative ones resolve against the config file's directory."""
        value = self.text(name, default)
        if value is default and default is not _MISSING:
            return value
        return self.resolve(value)

    def directory(self, name: str, default: Path) -> Path:
        """A directory the gateway creates if needed: it must be one, or be creatable.

        Checked without creating anything: an existing path must be a writable
        directory; a missing one needs its nearest existing parent to be one.
        """
        path: Path = self.path(name, default)
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            what = (
                "is not a directory" if probe == path else f"cannot be created: {probe} is a file"
            )
            raise self.error(name, f"{path} {what}")
        if not os.access(probe, os.W_OK | os.X_OK):  # permissions or a read-only mount
            what = (
                "is not writable"
                if probe == path
                else f"cannot be created: {probe} is not writable"
            )
            raise self.error(name, f"{path} {what}")
        return path

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.file.parent / path).resolve()

    def items(self, name: str, parse: Callable[[str], T], expected: str) -> tuple[T, ...]:
        """A list of strings each parsed by ``parse`` (which raises ValueError)."""
        out: list[T] = []
        for i, raw in enumerate(self.strings(name, [])):
            try:
                out.append(parse(raw))
            except ValueError:
                raise self.error(f"{name}[{i}]", f"expected {expected}, got {raw!r:.40}") from None
        return tuple(out)

    # ------------------------------------------------------------ secrets

    def secret(self, name: str, *, required: bool = True) -> Secret | None:
        """``{name}_file`` or ``{name}_env``; an inline ``{name}`` is refused."""
        file_key, env_key = f"{name}_file", f"{name}_env"
        if self.has(name):
            self._used.add(name)
            raise self.error(
                name, f"secrets are never inline; use {self.key(file_key)} or {self.key(env_key)}"
            )
        has_file, has_env = self.has(file_key), self.has(env_key)
        if has_file and has_env:
            raise self.error(file_key, f"set only one of {file_key} and {env_key}")
        if has_file:
            return Secret(self.secret_file(file_key))
        if has_env:
            variable = self.text(env_key)
            value = self._environ.get(variable, "").strip()
            if not value:
                raise self.error(env_key, f"environment variable {variable} is unset or empty")
            return Secret(value)
        if required:
            raise self.error(file_key, f"is required (or {self.key(env_key)})")
        return None

    def secret_file(self, name: str) -> str:
        path: Path = self.path(name)
        text = self.read_text(name, path)
        value = text.strip()
        if not value:
            raise self.error(name, f"{path} is empty")
        return value

    def read_text(self, name: str, path: Path) -> str:
        try:
            if path.stat().st_size > MAX_SECRET_BYTES:
                raise self.error(name, f"{path} is larger than {MAX_SECRET_BYTES} bytes")
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise self.error(name, f"cannot read {path}: {reason}") from None

    def mapping_file(self, name: str) -> tuple[Path, dict[str, Any]]:
        """A TOML (``.toml``) or JSON file holding one table/object."""
        path: Path = self.path(name)
        text = self.read_text(name, path)
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            # The parsers' messages quote only positions, never values, for these formats.
            reason = _first_line(exc)
            raise self.error(name, f"{path} is not valid {_format(path)}: {reason}") from None
        if not isinstance(data, dict):
            raise self.error(name, f"{path} must hold a table/object")
        return path, data


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8: a binary file or another encoding
        raise ConfigError(
            str(path), None, f"not a TOML file: not UTF-8 text (byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), None, f"invalid TOML: {_first_line(exc)}") from None


def default_environ() -> Mapping[str, str]:
    return os.environ


def _check_range(table: Table, name: str, value: float, low: float, high: float | None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise table.error(name, f"expected a number {bound}, got {value}")


def _kind(value: object) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _format(path: Path) -> str:
    return "TOML" if path.suffix == ".toml" else "JSON"


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
