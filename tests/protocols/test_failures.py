"""The failure vocabulary: one registry of codes, each with one kind; retry decided by kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import errordocs
from gateway.codes import code_of, load_builtin
from gateway.retry import is_transient
from protocols.driver import DriverError, Step
from protocols.failures import Code, FamilyCode, Kind, codes, families
from protocols.mcuboot.driver import smp_code
from protocols.mcugw.codes import STATUS_CODES
from protocols.mcugw.constants import Status

ROOT = Path(__file__).resolve().parents[2]

#: Codes published before the registry existed: twins and fleet queries match on these strings.
PUBLISHED = {
    "MCU_TIMEOUT": Kind.TIMEOUT,
    "MCU_DISCONNECTED": Kind.DISCONNECTED,
    "MCU_NO_ANSWER": Kind.ABSENT,
    "MCU_PROTOCOL_ERROR": Kind.LINK,
    "MCU_FRAME_ERROR": Kind.LINK,
    "MCU_NACK": Kind.LINK,
    "MCU_BUSY": Kind.BUSY,
    "MCU_SMP_EBUSY": Kind.BUSY,
    "MCU_VERIFY_FAILED": Kind.DEVICE,
    "MCU_DELTA_BASE_MISMATCH": Kind.DELTA,
    "DELTA_BASE_MISMATCH": Kind.DELTA,
    "DELTA_UNSUPPORTED": Kind.DELTA,
    "APP_NOT_CONFIRMED": Kind.UNCONFIRMED,
    "ROLLED_BACK": Kind.BOOT,
    "DOWNLOAD_FAILED": Kind.NETWORK,
    "DOWNLOAD_TIMEOUT": Kind.TIMEOUT,
    "CACHE_ERROR": Kind.STORAGE,
    "SIGNATURE_INVALID": Kind.TRUST,
    "PACKAGE_NOT_FOUND": Kind.SOURCE,
    "DOWNGRADE": Kind.TARGET,
    "IMAGE_REJECTED": Kind.IMAGE,
    "DRIVER_CONFIG_INVALID": Kind.CONFIG,
    "MCU_SMP_IMAGE_NO_FREE_SLOT": Kind.REFUSED,
    "INTERNAL_ERROR": Kind.INTERNAL,
    "ABORTED": Kind.ABORTED,
    "SUPERSEDED": Kind.ABORTED,
}


@pytest.mark.parametrize(("code", "kind"), sorted(PUBLISHED.items()))
def test_published_codes_keep_their_strings_and_have_one_kind(code: str, kind: Kind) -> None:
    typed = code_of(code)
    assert typed is not None
    assert typed == code
    assert typed.kind is kind


def test_every_code_string_is_declared_once_with_a_meaning() -> None:
    load_builtin()
    seen: dict[str, type[Code]] = {}
    for member in codes():
        assert member.value not in seen, f"{member.value} in {seen.get(member.value)} too"
        seen[member.value] = type(member)
        assert member.meaning, member
        assert member.kind.meaning
    assert len(seen) > 60


def test_every_mcugw_refusal_status_has_a_code() -> None:
    assert set(STATUS_CODES) == set(Status) - {Status.OK}
    assert STATUS_CODES[Status.BUSY].kind is Kind.BUSY


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("EBUSY", Kind.BUSY),  # the device asks us to come back: retried
        ("ENOTSUP", Kind.UNSUPPORTED),
        ("IMAGE_FLASH_WRITE_FAILED", Kind.DEVICE),
        ("IMAGE_INVALID_IMAGE_HEADER_MAGIC", Kind.IMAGE),
        ("IMAGE_NO_FREE_SLOT", Kind.REFUSED),
        ("GROUP64_RC3", Kind.REFUSED),
    ],
)
def test_smp_error_names_map_to_kinds(name: str, kind: Kind) -> None:
    code = smp_code(name)
    assert code == f"MCU_SMP_{name}"
    assert code.kind is kind
    assert DriverError(code, "x", Step.WRITE).kind is kind


def test_family_codes_are_found_from_their_string() -> None:
    typed = code_of("MCU_SMP_IMAGE_FLASH_ERASE_FAILED")
    assert isinstance(typed, FamilyCode)
    assert typed.family in families()


def test_a_driver_error_with_an_undeclared_code_is_refused() -> None:
    with pytest.raises(ValueError, match="MCU_MADE_UP"):
        DriverError("MCU_MADE_UP", "no table declares this")


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("MCU_PROTOCOL_ERROR", True),  # mcugw's damaged link
        ("MCU_FRAME_ERROR", True),  # MCUboot's damaged link
        ("MCU_NACK", True),  # the STM32 ROM loader's damaged link
        ("MCU_SMP_EBUSY", True),
        ("DOWNLOAD_UNTRUSTED", False),  # a certificate does not heal by retrying
        ("SIGNATURE_INVALID", False),
        ("MCU_SMP_IMAGE_NO_FREE_SLOT", False),
        ("SOMETHING_ELSE", False),
    ],
)
def test_retry_is_decided_by_kind(code: str, transient: bool) -> None:
    assert is_transient(code) is transient


def test_docs_code_tables_are_generated_from_the_registry() -> None:
    # Run `python -m gateway.errordocs --write` after changing a code table.
    assert errordocs.stale(ROOT) == []


def test_a_changed_table_makes_the_docs_stale(tmp_path: Path) -> None:
    for rel in errordocs.DOCS:
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((ROOT / rel).read_text(encoding="utf-8"), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `link` | yes |", "| `link` | no |"))
    assert errordocs.stale(tmp_path) == ["README.md"]
    assert errordocs.main(["--root", str(tmp_path), "--check"]) == 1
    assert errordocs.main(["--root", str(tmp_path), "--write"]) == 0
    assert errordocs.stale(tmp_path) == []


def test_the_journal_gives_the_kind_of_every_failure_it_recorded(tmp_path: Path) -> None:
    from gateway.journal import Journal, Outcome

    with Journal.open(tmp_path / "j") as journal:
        journal.upsert_mcu("0a", device_id="mcu-1", model="m", port="p")
        for code in ("MCU_NACK", "SIGNATURE_INVALID"):
            journal.begin_update("0a", "2.0.0", "ab" * 32, "https://cdn.example/fw")
            journal.finish_update("0a", Outcome.ERROR, error_code=code, message="x")
        journal.begin_update("0a", "2.0.0", "ab" * 32, "https://cdn.example/fw")
        journal.finish_update("0a", Outcome.CURRENT)
        kinds = [(r.error_code, r.error_kind) for r in journal.history("0a")]
    assert sorted(kinds, key=str) == sorted(
        [("MCU_NACK", Kind.LINK), ("SIGNATURE_INVALID", Kind.TRUST), (None, None)], key=str
    )
