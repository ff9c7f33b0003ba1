"""Configuration files that used to end in tracebacks (issue 17.7): one line each, naming
the file and the key, and nothing created."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.gateway.test_config import BASE, error_for, home  # noqa: F401 (fixture)
from tests.smallfs import small_fs


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a key at all\n", "not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        (random.Random(64).randbytes(64), "not a PEM public key"),
    ],
)
def test_a_trust_key_that_is_not_a_pem_key(home: Path, content: bytes, expected: str) -> None:  # noqa: F811
    (home / "release.pub").write_bytes(content)
    error = error_for(home, BASE)
    assert error.key == "trust.public_keys[0]"
    assert expected in error.message
    assert "\n" not in str(error)


def test_state_dir_that_is_a_file(home: Path) -> None:  # noqa: F811
    (home / "state").write_text("a file, not a directory")
    error = error_for(home, BASE)
    assert error.key == "gateway.state_dir"
    assert "is not a directory" in error.message


def test_state_dir_that_cannot_be_created(home: Path) -> None:  # noqa: F811
    (home / "blocker").write_text("a file where a parent directory should be")
    error = error_for(home, BASE.replace('state_dir = "state"', 'state_dir = "blocker/state"'))
    assert error.key == "gateway.state_dir"
    assert "cannot be created" in error.message
    assert not (home / "state").exists()  # nothing created by loading the configuration


def test_state_dir_on_a_read_only_file_system(home: Path) -> None:  # noqa: F811
    with small_fs(home / "ro", "1m", read_only=True) as ro:
        error = error_for(home, BASE.replace('state_dir = "state"', f'state_dir = "{ro}/gw"'))
    assert error.key == "gateway.state_dir"
    assert "cannot be created" in error.message


@pytest.mark.parametrize(
    "content",
    [
        '[gateway]\ndevice_id = "gw"  # caf\xe9\n'.encode("latin-1"),  # not UTF-8
        b"\x7fELF\x02\x01\x01\x00" + random.Random(200).randbytes(200),  # a binary
        b"\x00\x01\x02\xff\xfe",
    ],
)
def test_a_config_file_that_is_not_utf8_text(home: Path, content: bytes) -> None:  # noqa: F811
    path = home / "gw.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("download_deadline_s = nan", "policy.download_deadline_s"),
        ("retry_base_s = inf", "policy.retry_base_s"),
        ("retry_max_s = +inf", "policy.retry_max_s"),
        ("confirm_timeout_s = -nan", "policy.confirm_timeout_s"),
    ],
)
def test_nan_and_inf_are_refused(home: Path, setting: str, key: str) -> None:  # noqa: F811
    error = error_for(home, BASE.replace("[trust]", f"[policy]\n{setting}\n[trust]"))
    assert error.key == key
    assert "expected a finite number" in error.message
