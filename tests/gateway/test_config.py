"""Configuration: typed values, errors that name file and key, secrets that never leak."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from firmware import keys
from gateway.config import HubMode, LogFormat, UsbFilter, load_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RELEASE_PUB = keys.public_pem(keys.generate(keys.Algorithm.ED25519).public_key())
GROUP_KEY = "c2VjcmV0LWdyb3VwLWtleS1kby1ub3QtbG9nLW1lLXBsZWFzZQ=="
SERVICE_CS = "HostName=hub.example:443;SharedAccessKeyName=owner;SharedAccessKey=U0VSVklDRQ=="

BASE = """
[gateway]
device_id = "gw-01"
state_dir = "state"
[hub]
mode = "dps"
id_scope = "0ne0001"
group_key_file = "group.key"
[trust]
public_keys = ["release.pub"]
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "group.key").write_text(GROUP_KEY + "\n")
    (tmp_path / "release.pub").write_bytes(RELEASE_PUB)
    return tmp_path


def write(home: Path, text: str) -> Path:
    path = home / "gw.toml"
    path.write_text(text)
    return path


def error_for(home: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    path = write(home, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    assert info.value.file == str(path)
    assert str(path) in str(info.value)
    return info.value


def test_minimal_dps_config_has_defaults_and_resolved_paths(home: Path) -> None:
    config = load_config(write(home, BASE), {})
    assert config.gateway.device_id == "gw-01"
    assert config.gateway.state_dir == home / "state"
    assert config.gateway.cache_dir == home / "state" / "cache"
    assert config.gateway.log_format is LogFormat.TEXT
    assert config.hub.mode is HubMode.DPS
    assert config.hub.dps is not None
    assert config.hub.dps.group_key.reveal() == GROUP_KEY
    assert config.hub.dps.dps_host == "global.azure-devices-provisioning.net"
    assert config.hub.ca_file is None
    assert config.trust.public_keys == (home / "release.pub",)
    assert config.policy.allowed_schemes == ("https",)
    assert config.serial.baud == 115200


def test_every_section_parses(home: Path) -> None:
    text = BASE.replace(
        "[trust]",
        """
[serial]
ports = ["/dev/ttyUSB*", "rel/tty0", "socket://127.0.0.1:7000"]
usb = ["0403:6001"]
baud = 921600
[policy]
max_concurrent_flashes = 2
allowed_schemes = ["https", "HTTP"]
[trust]""",
    )
    config = load_config(write(home, text), {})
    assert config.serial.ports == (
        "/dev/ttyUSB*",
        str(home / "rel/tty0"),
        "socket://127.0.0.1:7000",
    )
    assert config.serial.usb == (UsbFilter(0x0403, 0x6001),)
    assert str(config.serial.usb[0]) == "0403:6001"
    assert config.policy.allowed_schemes == ("https", "http")


def test_the_example_documents_a_loadable_config(tmp_path: Path) -> None:
    text = (ROOT / "config" / "gateway.example.toml").read_text()
    (tmp_path / "group.key").write_text(GROUP_KEY)
    (tmp_path / "release.pub").write_bytes(RELEASE_PUB)
    text = text.replace("/etc/mcu-gateway/", "").replace("/var/", "var/")
    config = load_config(write(tmp_path, text), {})
    assert config.hub.mode is HubMode.DPS
    assert config.policy.max_concurrent_flashes == 32
    policy = config.policy
    assert (policy.retry_attempts, policy.retry_base_s, policy.retry_max_s) == (5, 30.0, 900.0)


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        (('device_id = "gw-01"', ""), "gateway.device_id", "is required"),
        (('device_id = "gw-01"', 'device_id = "GW 01"'), "gateway.device_id", "lower-case"),
        (('mode = "dps"', 'mode = "cloud"'), "hub.mode", "'dps' | 'registry' | 'static'"),
        (('id_scope = "0ne0001"', "id_scope = 7"), "hub.id_scope", "expected a string"),
        (("[trust]", '[serial]\nbaud = "fast"\n[trust]'), "serial.baud", "expected an integer"),
        (("[trust]", '[serial]\nusb = ["ftdi"]\n[trust]'), "serial.usb[0]", "VID:PID"),
        (
            ("[trust]", '[policy]\nallowed_schemes = ["file"]\n[trust]'),
            "policy.allowed_schemes[0]",
            "https or http",
        ),
        (
            ("[trust]", "[policy]\nmax_concurrent_flashes = 0\n[trust]"),
            "policy.max_concurrent_flashes",
            "between 1 and 1024",
        ),
        (
            ("[trust]", "[policy]\nretry_base_s = 60\nretry_max_s = 30\n[trust]"),
            "policy.retry_max_s",
            "not be less than retry_base_s",
        ),
        (("[trust]", "[policy]\nretry_attempts = 0\n[trust]"), "policy.retry_attempts", "1"),
        (("state_dir", "stat_dir"), "gateway.stat_dir", "unknown key"),
        (
            ('group_key_file = "group.key"', 'group_key_file = "missing.key"'),
            "hub.group_key_file",
            "cannot read",
        ),
        (('group_key_file = "group.key"', ""), "hub.group_key_file", "group_key_env"),
        (
            ('public_keys = ["release.pub"]', "public_keys = []"),
            "trust.public_keys",
            "allow_unsigned",
        ),
    ],
)
def test_errors_name_file_key_and_expectation(
    home: Path, edit: tuple[str, str], key: str, expected: str
) -> None:
    error = error_for(home, BASE.replace(*edit, 1))
    assert error.key == key
    assert key in str(error)
    assert expected in str(error)


def test_a_section_that_is_not_a_table(home: Path) -> None:
    error = error_for(home, "policy = 3\n" + BASE)
    assert (error.key, error.message) == ("policy", "expected a table, got int")


def test_invalid_toml_names_the_file(home: Path) -> None:
    error = error_for(home, "[gateway\n")
    assert "invalid TOML" in str(error)


def test_inline_secrets_are_refused_without_quoting_them(home: Path) -> None:
    text = BASE.replace('group_key_file = "group.key"', f'group_key = "{GROUP_KEY}"')
    error = error_for(home, text)
    assert error.key == "hub.group_key"
    assert "never inline" in str(error)
    assert GROUP_KEY not in str(error)


def test_secret_from_environment(home: Path) -> None:
    text = BASE.replace('group_key_file = "group.key"', 'group_key_env = "GW_KEY"')
    config = load_config(write(home, text), {"GW_KEY": GROUP_KEY})
    assert config.hub.dps is not None
    assert config.hub.dps.group_key.reveal() == GROUP_KEY
    error = error_for(home, text, {"OTHER": "x"})
    assert (error.key, "GW_KEY is unset") == ("hub.group_key_env", "GW_KEY is unset")


def test_registry_mode_and_secrets_stay_out_of_repr_and_logs(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (home / "service.cs").write_text(SERVICE_CS)
    text = BASE.replace('mode = "dps"', 'mode = "registry"').replace(
        'id_scope = "0ne0001"\ngroup_key_file = "group.key"',
        'service_connection_string_file = "service.cs"',
    )
    config = load_config(write(home, text), {})
    assert config.hub.registry is not None
    assert config.hub.registry.service_connection_string.reveal() == SERVICE_CS
    rendered = f"{config!r} {config!s} {config.hub.registry.service_connection_string}"
    logging.getLogger("test").info("config %s %r", config, config)
    for secret in ("U0VSVklDRQ==", SERVICE_CS):
        assert secret not in rendered
        assert secret not in caplog.text


def test_static_mode_reads_a_uid_map_and_names_bad_entries(home: Path) -> None:
    cs = "HostName=h;DeviceId=d;SharedAccessKey=S0VZ"
    (home / "gw.cs").write_text(cs)
    text = BASE.replace('mode = "dps"', 'mode = "static"').replace(
        'id_scope = "0ne0001"\ngroup_key_file = "group.key"',
        'connection_strings_file = "devices.toml"\ngateway_connection_string_file = "gw.cs"',
    )
    (home / "devices.toml").write_text(f'"0A:1B" = "{cs}"\n')
    config = load_config(write(home, text), {})
    assert config.hub.static is not None
    assert config.hub.static.connection_strings["0a1b"].reveal() == cs

    (home / "devices.toml").write_text('"0a1b" = "S0VZ-not-a-connection-string"\n')
    error = error_for(home, text)
    assert "hub.connection_strings_file" in str(error)
    assert "'0a1b'" in str(error)
    assert "S0VZ" not in str(error)


SERIAL_RULES = """
[serial]
ports = ["/dev/ttyUSB*"]
baud = 921600
bootloaders = ["mcuboot", "mcugw"]

[[serial.port]]
match = "/dev/ttyUSB1*"
bootloader = "stm32-rom"
baud = 115200
options = { reset_line = "dtr", boot0_line = "rts", boot_delay_ms = 80, enter_command = "bl\\n" }

[[serial.port]]
match = "/dev/ttyUSB*"
options = { uid = "0a0b" }
"""


def test_serial_bootloader_order_and_port_rules(home: Path) -> None:
    from gateway.discovery import plan_for

    config = load_config(write(home, BASE + SERIAL_RULES), {})
    serial = config.serial
    assert serial.bootloaders == ("mcuboot", "mcugw")
    stm = plan_for("/dev/ttyUSB12", serial, confirm_timeout_s=30.0)
    assert [s.name for s in stm.order] == ["stm32-rom"]
    assert stm.options.baud == 115200
    assert stm.options.confirm_timeout_s == 30.0
    assert dict(stm.options.extra) == {
        "reset_line": "dtr", "boot0_line": "rts", "boot_delay_ms": 80, "enter_command": "bl\n",
    }  # fmt: skip
    other = plan_for("/dev/ttyUSB2", serial, confirm_timeout_s=30.0)  # second rule: no driver
    assert [s.name for s in other.order] == ["mcuboot", "mcugw"]
    assert other.options.baud == 921600
    assert dict(other.options.extra) == {"uid": "0a0b"}
    unmatched = plan_for("/dev/ttyACM0", serial, confirm_timeout_s=30.0)
    assert unmatched.options.extra == {}


@pytest.mark.parametrize(
    ("snippet", "key", "expect"),
    [
        ('[serial]\nbootloaders = ["mcugw", "nope"]\n', "serial.bootloaders[1]",
         "unknown bootloader 'nope'; known: mcuboot, mcugw, stm32-rom"),
        ('[[serial.port]]\nmatch = "/dev/x"\nbootloader = "stm32"\n', "serial.port[0].bootloader",
         "unknown bootloader 'stm32'"),
        ('[[serial.port]]\nbootloader = "mcugw"\n', "serial.port[0].match", "is required"),
        ('[[serial.port]]\nmatch = "/dev/x"\noptions = { a = 1.5 }\n', "serial.port[0].options.a",
         "expected a string, integer or boolean"),
        ('[[serial.port]]\nmatch = "/dev/x"\nbaud = 7\n', "serial.port[0].baud", ""),
        ('[[serial.port]]\nmatch = "/dev/x"\nwhat = 1\n', "serial.port[0].what", "unknown key"),
        ('[serial]\nport = 3\n', "serial.port", "expected an array of tables"),
        # A misspelt driver option would be ignored by every driver: refused by name.
        ('[[serial.port]]\nmatch = "/dev/x"\nbootloader = "stm32-rom"\n'
         'options = { resetline = "dtr" }\n', "serial.port[0].options.resetline",
         "unknown driver option 'resetline' for stm32-rom (known: boot0_active_high"),
        ('[[serial.port]]\nmatch = "/dev/x"\noptions = { bot0_line = "rts" }\n',
         "serial.port[0].options.bot0_line", "for mcugw or mcuboot or stm32-rom"),
    ],
)  # fmt: skip
def test_serial_rule_errors_name_the_key(home: Path, snippet: str, key: str, expect: str) -> None:
    err = error_for(home, BASE + snippet)
    assert err.key == key
    assert expect in str(err)
