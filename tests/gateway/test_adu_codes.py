"""One mapping from failure codes to ADU result codes, and docs/adu.md generated from it."""

from __future__ import annotations

from pathlib import Path

from gateway.adu import codes
from gateway.codes import load_builtin
from protocols.failures import Kind
from protocols.failures import codes as all_codes

DOC = Path(__file__).resolve().parents[2] / "docs" / "adu.md"


def test_every_kind_has_an_erc_and_they_are_distinct() -> None:
    # A new Kind without an ADU code fails here, not silently in the field.
    assert set(codes.KIND_VALUES) == set(Kind) - {Kind.NONE}
    ercs = [codes.kind_erc(k) for k in codes.KIND_VALUES]
    assert len(set(ercs)) == len(ercs)
    for kind in codes.KIND_VALUES:
        assert codes.kind_of_erc(codes.kind_erc(kind)) is kind


def test_every_declared_code_maps() -> None:
    load_builtin()
    for code in all_codes():
        if code.kind is Kind.NONE:
            continue
        erc = codes.erc_for(code.value)
        assert erc == codes.MICROSOFT.get(code.value, codes.kind_erc(code.kind)), code


def test_unknown_codes_are_internal() -> None:
    assert codes.erc_for("NO_SUCH_CODE") == codes.kind_erc(Kind.INTERNAL)


def test_microsoft_codes_are_the_published_ones() -> None:
    # result.h: CONTENT_DOWNLOADER facility 4 and STEPS_HANDLER (facility 3, component 4).
    assert codes.erc_hex(codes.ERC_CONTENT_DOWNLOADER_INVALID_FILE_HASH) == "4000000C"
    assert codes.erc_hex(codes.ERC_STEP_COMPATIBILITY_FAILED) == "30400007"
    assert codes.jws_erc(codes.JwsResult.INVALID_SIGNATURE) == 0xA0200004


def test_docs_hold_the_generated_tables() -> None:
    text = DOC.read_text()
    begin, end = "<!-- adu-codes:begin -->\n", "<!-- adu-codes:end -->"
    assert text[text.index(begin) + len(begin) : text.index(end)] == codes.markdown_tables()
