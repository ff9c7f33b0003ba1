"""`mcu-gateway fleet` against the hub emulator through the official service SDK."""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.cli import build_parser, main
from simulators.hub import HubEmulator
from tests.gateway.fleet.conftest import mcu, seed
from tests.net import addr

SHA = "ab" * 32
ERR = {"code": "MODEL_MISMATCH", "message": "package is for vmcu-f4", "phase": "verifying",
       "at": "2026-11-29T10:00:00Z"}  # fmt: skip


def small_fleet(hub: HubEmulator) -> None:
    seed(
        hub,
        {
            "m1": ({"group": "a", "ring": "canary"}, mcu("vmcu-f4", "1.0.0", "current")),
            "m2": ({"group": "a", "ring": "canary"}, mcu("vmcu-l0", "1.0.0", "error", error=ERR)),
            "m3": ({"group": "a"}, mcu("vmcu-f4", "1.0.0", "downloading", progress=40,
                                       pendingFwVersion="2.0.0")),
            "m4": ({"group": "b"}, mcu("vmcu-f4", "2.0.0", "current")),
        },
    )  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def with_flag(argv: list[str], flag: str, value: str) -> list[str]:
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def conn(hub: HubEmulator, cs_file: Path) -> list[str]:
    return ["--service-cs-file", str(cs_file), "--ca-file", hub.facts.ca_path]


def _fleet_parsers() -> dict[str, argparse.ArgumentParser]:
    def subs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    return subs(subs(build_parser())["fleet"])


def test_every_fleet_option_shows_its_default_in_help() -> None:
    parsers = _fleet_parsers()
    assert len(parsers) == 9
    missing = []
    for name, parser in parsers.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            text = formatter._expand_help(action) if action.help else ""
            what = f"fleet {name} {(action.option_strings or [action.dest])[0]}"
            if not text:
                missing.append(f"{what}: no help")
            # An option that takes a value says what happens without it; a flag is off.
            takes_value = action.option_strings and action.nargs != 0 and not action.required
            if text and takes_value and "(default: " not in text:
                missing.append(f"{what}: {text}")
    assert missing == []


def test_status_counts_and_pinpoints_failures(
    fast_hub: HubEmulator, cs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_fleet(fast_hub)
    code, out, err = run(capsys, "fleet", "status", "--json", *conn(fast_hub, cs_file))
    assert code == 0, err
    status = json.loads(out)
    assert status["total"] == 4
    assert status["by_model"] == {"vmcu-f4": 3, "vmcu-l0": 1}
    assert status["by_status"] == {"current": 2, "downloading": 1, "error": 1}
    assert status["versions_by_model"]["vmcu-f4"] == {"1.0.0": 2, "2.0.0": 1}
    assert status["failures"] == [
        {"device_id": "m2", "gateway": "gw-1", "port": "/dev/ttyUSB0", "model": "vmcu-l0",
         "status": "error", "version": "1.0.0", "target": "-", "code": "MODEL_MISMATCH",
         "phase": "verifying",
         "message": "package is for vmcu-f4", "at": "2026-11-29T10:00:00Z"}
    ]  # fmt: skip
    assert status["in_progress"][0]["device_id"] == "m3"
    assert status["in_progress"][0]["progress"] == 40

    code, out, _ = run(capsys, "fleet", "status", "--json", "--where", "tags.[[group]] = 'b'",
                       *conn(fast_hub, cs_file))  # fmt: skip
    assert json.loads(out)["total"] == 1

    code, out, err = run(capsys, "fleet", "status", "--where", "tags.[[group]] = = 'b'",
                         *conn(fast_hub, cs_file))  # fmt: skip
    assert code == 1
    assert err.startswith("mcu-gateway fleet status: error: query: IoT Hub answered 400")

    code, out, _ = run(capsys, "fleet", "status", *conn(fast_hub, cs_file))
    assert code == 0 and "MODEL_MISMATCH" in out and "m2" in out
    key = fast_hub.facts.service_connection_string.split("SharedAccessKey=")[1]
    assert key not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--rings", "canary,nosuch,all"],
            "unknown group: no MCU in the target has tags.ring = 'nosuch'",
        ),
        (["--max-failure-rate", "1.5"], "--max-failure-rate 1.5: must be within 0-1"),
        (["--target", "tags.[[group]] = = 'a'"], "IoT Hub refuses the query"),
        (["--target", "tags.[[group]] = 'zzz'"], "--target matches no MCU"),
        (["--package-uri", "https://127.0.0.1:1/nothing.mcufw"], "package URI fails"),
        (["--window", "25:00-01:00"], "--window"),
        (["--rings", "", "--percent", "1,50,90"], "--percent must rise and end at 100"),
        (["--start", "next tuesday"], "--start 'next tuesday': expected ISO-8601"),
        (["--rings", "", "--percent", "nan,100"], "--percent value 'nan' is not a number"),
        (["--timeout", "nan"], "--timeout must be a positive number of seconds, not nan"),
        (["--interval", "inf"], "--interval must be a positive number of seconds, not inf"),
        (
            ["--target", "properties.reported.firmware.currentFwVersion = '1.0.0'"],
            "--target depends on properties.reported.firmware, which the rollout itself changes",
        ),
    ],
)
def test_deploy_bad_input_is_one_line_and_creates_nothing(
    fast_hub: HubEmulator, cs_file: Path, capsys: pytest.CaptureFixture[str],
    args: list[str], message: str,
) -> None:  # fmt: skip
    small_fleet(fast_hub)
    base = {"--name": "v2", "--package-uri": "https://127.0.0.1:1/fw.mcufw",
            "--check-value": SHA, "--size": "100", "--version": "2.0.0",
            "--target": "tags.[[group]] = 'a'", "--rings": "canary,all"}  # fmt: skip
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = [x for k, v in (base | given).items() if v for x in (k, v)]  # "" drops a flag
    # The package URI is checked last, so bad queries and groups are found without it.
    code, _, err = run(capsys, "fleet", "deploy", *argv, *conn(fast_hub, cs_file))
    assert code == 1
    assert err.count("\n") == 1 and message in err, err
    assert fast_hub.call(lambda s: list(s.configurations.configs)) == []


def test_missing_connection_string_is_a_clear_error(
    fast_hub: HubEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "fleet", "status")
    assert code == 1 and "use --service-cs-file FILE or $MCU_GATEWAY_SERVICE_CS" in err
    code, _, err = run(capsys, "fleet", "status", "--service-cs-file", str(tmp_path / "nope"))
    assert code == 1 and "No such file" in err


def test_a_garbled_connection_string_is_refused_without_echoing_it(
    fast_hub: HubEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.cs"
    bad.write_text("SharedAccessKey=c2VjcmV0LXNlY3JldA==;nonsense")
    code, out, err = run(capsys, "fleet", "status", "--service-cs-file", str(bad))
    assert code == 1 and "does not parse" in err
    assert "c2VjcmV0" not in out + err


def test_connection_string_from_the_environment(
    fast_hub: HubEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    small_fleet(fast_hub)
    monkeypatch.setenv("MCU_GATEWAY_SERVICE_CS", fast_hub.facts.service_connection_string)
    code, out, _ = run(capsys, "fleet", "rollouts", "--ca-file", fast_hub.facts.ca_path)
    assert (code, out.strip()) == (0, "no rollouts")


def test_a_private_ca_without_ca_file_names_the_certificate_and_the_switch(
    fast_hub: HubEmulator, cs_file: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # The emulator's CA is private: with neither --ca-file nor REQUESTS_CA_BUNDLE
    # only the system CAs are trusted, and they do not vouch for it.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    code, out, err = run(capsys, "fleet", "status", "--service-cs-file", str(cs_file))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1, err
    line = err.strip()
    # The verifier's own reason, whole: the emulator's chain ends at its private CA.
    assert "its TLS certificate is not trusted (unable to get local issuer certificate)" in line
    assert line.endswith("give the hub's CA with --ca-file PEM or REQUESTS_CA_BUNDLE"), line
    assert "SSLCertVerificationE)" not in line  # no text cut mid-word


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no MCUs named: give DEVICE_IDs or --where CONDITION"),
        (
            ["m1", "--where", "tags.ring = 'x'"],
            "name the MCUs either as DEVICE_IDs or with --where, not both",
        ),
    ],
)
def test_tag_says_what_is_missing_in_one_line(
    fast_hub: HubEmulator, cs_file: Path, capsys: pytest.CaptureFixture[str],
    argv: list[str], message: str,
) -> None:  # fmt: skip
    small_fleet(fast_hub)
    code, out, err = run(capsys, "fleet", "tag", "--ring", "canary", *argv,
                         *conn(fast_hub, cs_file))  # fmt: skip
    assert (code, out) == (1, "")
    assert err == f"mcu-gateway fleet tag: error: {message}\n"
    tags = fast_hub.call(lambda s: {d: t.tags.get("ring") for d, t in s.hub.twins.items()})
    assert tags == {"m1": "canary", "m2": "canary", "m3": None, "m4": None}  # nothing changed


@pytest.fixture
def package_server(tmp_path: Path) -> Iterator[str]:
    """Plain HTTP on loopback serving one package file; yields its URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "fw-3.0.0.mcufw").write_bytes(b"x" * 10)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer((addr(12, 250), 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{addr(12, 250)}:{server.server_port}/fw-3.0.0.mcufw"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_tag_deploy_rollouts_show_cancel(
    fast_hub: HubEmulator, cs_file: Path, capsys: pytest.CaptureFixture[str], package_server: str
) -> None:
    small_fleet(fast_hub)
    c = conn(fast_hub, cs_file)
    code, out, err = run(capsys, "fleet", "tag", "--where", "tags.[[group]] = 'b'",
                         "--ring", "canary", *c)  # fmt: skip
    assert code == 0, err
    assert fast_hub.twin("m4").tags == {"group": "b", "ring": "canary"}
    sas_uri = package_server + "?sv=2024-01-01&sig=s3cr3t-sig"  # a Blob SAS URL's shape
    deploy = ["fleet", "deploy", "--name", "v3", "--package-uri", sas_uri, "--check-value",
              SHA, "--size", "10", "--version", "3.0.0", "--target", "tags.[[group]] = 'b'",
              "--rings", "canary,all", *c]  # fmt: skip
    code, out, err = run(capsys, *with_flag(deploy, "--size", "99"))
    assert code == 1 and "serves 10 bytes but --size says 99" in err
    assert "s3cr3t" not in err
    code, out, err = run(capsys, *deploy)
    assert code == 0, err
    assert "rollout v3: waiting: ring 1 (canary)" in out
    assert fast_hub.twin("m4").desired["firmware"]["fwVersion"] == "3.0.0"
    assert "firmware" not in fast_hub.twin("m1").desired  # group a is not targeted
    # Rerunning the same command carries on; other settings under the name are refused.
    code, out, err = run(capsys, *deploy)
    assert code == 0 and "state running" in out
    code, out, err = run(capsys, *with_flag(deploy, "--version", "3.0.1"))
    assert code == 1 and "already exists with other settings" in err

    code, out, _ = run(capsys, "fleet", "rollouts", "--json", *c)
    (listed,) = json.loads(out)
    assert (listed["name"], listed["state"], listed["rings"]) == (
        "v3",
        "running",
        ["canary", "all"],
    )
    assert listed["started"][0]["applied"] == 1
    code, out, _ = run(capsys, "fleet", "show", "v3", *c)
    assert code == 0 and "canary" in out and "not started" in out
    assert "package: http://" in out and "s3cr3t" not in out  # the SAS token is a secret
    assert fast_hub.twin("m4").desired["firmware"]["fwPackageURI"] == sas_uri  # the MCU needs it

    code, out, err = run(capsys, "fleet", "cancel", "v3", *c)
    assert code == 0, err
    code, out, _ = run(capsys, "fleet", "show", "v3", "--json", *c)
    assert json.loads(out)["state"] == "cancelled"
    code, out, err = run(capsys, "fleet", "show", "nope", *c)
    assert code == 1 and "no rollout named 'nope'" in err


def test_html_report_renders_in_a_real_browser(
    fast_hub: HubEmulator, cs_file: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Debian's chromium package is needed (see .ci/run)"
    small_fleet(fast_hub)
    html = tmp_path / "fleet.html"
    code, _, err = run(capsys, "fleet", "status", "--html", str(html), *conn(fast_hub, cs_file))
    assert code == 0, err
    page = html.read_text()
    assert "<svg" in page and "MODEL_MISMATCH" in page and "<script" not in page
    assert "src=" not in page and "href=" not in page  # self-contained
    shot = tmp_path / "fleet.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1000,900", html.as_uri()],
        check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    image = Image.open(shot).convert("RGB")
    raw = image.tobytes()
    pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    coloured = sum(1 for p in pixels if max(p) - min(p) > 60)  # chart bars, not text
    dark = sum(1 for p in pixels if max(p) < 100)  # text
    assert coloured > 5000, f"only {coloured} coloured pixels: the chart did not render"
    assert dark > 2000, f"only {dark} dark pixels: no text rendered"
    red = sum(1 for r, g, b in pixels if r > 180 and g < 80 and b < 80)
    assert red > 200  # the failed MCU's error segment


def test_rollback_and_retry_from_the_command_line(
    fast_hub: HubEmulator, cs_file: Path, capsys: pytest.CaptureFixture[str], package_server: str
) -> None:
    small_fleet(fast_hub)
    c = conn(fast_hub, cs_file)
    package = ["--package-uri", package_server, "--check-value", SHA, "--size", "10"]
    code, _, err = run(capsys, "fleet", "deploy", "--name", "v3", *package, "--version", "3.0.0",
                       "--target", "tags.[[group]] = 'a'", *c)  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "fleet", "retry", "v3", *c)
    assert code == 1 and "has no failed MCU to retry" in err  # m2's error predates v3
    code, _, err = run(capsys, "fleet", "rollback", "v3", *c)
    assert code == 1 and "give the version with --package-uri" in err
    code, _, err = run(capsys, "fleet", "rollback", "v3", "--version", "1.0.0", *c)
    assert code == 1 and "give all of --package-uri, --check-value, --size and --version" in err
    code, out, err = run(capsys, "fleet", "rollback", "v3", *package, "--version", "1.0.0", *c)
    assert code == 0, err
    assert "rolling 3 MCU(s) back to 1.0.0 (v3-rollback)" in out
    fast_hub.wait_for(  # IoT Hub applies a new configuration at its next evaluation
        lambda s: s.hub.get_twin("m1").desired["firmware"]["fwVersion"] == "1.0.0", 10
    )
    fw = fast_hub.twin("m1").desired["firmware"]
    assert (fw["fwVersion"], fw["allowDowngrade"]) == ("1.0.0", True)
    code, out, _ = run(capsys, "fleet", "show", "v3", "--json", *c)
    shown = json.loads(out)
    assert shown["state"] == "rolledback" and shown["extra"] == ["v3-rollback"]
