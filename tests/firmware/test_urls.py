from __future__ import annotations

import pytest

from firmware.urls import redact_text, redact_url

SAS = (
    "https://acct.blob.core.windows.net/fw/app-2.0.0.mcufw"
    "?sv=2022-11-02&se=2026-12-01T00%3A00%3A00Z&sr=b&sp=r&sig=s3cr3t%2Bsig%3D"
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SAS, "https://acct.blob.core.windows.net/fw/app-2.0.0.mcufw?***"),
        ("https://user:s3cr3t-token@h.example:8443/p/a.bin", "https://***@h.example:8443/p/a.bin"),
        ("https://tok@h.example/a.bin?sig=x#frag", "https://***@h.example/a.bin?***#***"),
        ("https://h.example/a.bin", "https://h.example/a.bin"),
        ("https://[::1]:9/a", "https://[::1]:9/a"),
        ("https://h:notaport/a?sig=x", "https://***"),
    ],
)
def test_userinfo_and_query_are_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_urls_inside_text_are_masked_and_the_rest_kept() -> None:
    text = (
        f"{SAS}: giving up after 8 failed attempts; "
        "redirected to 'https://user:s3cr3t-token@cdn.example/x?sig=abc'"
    )
    out = redact_text(text)
    for secret in ("s3cr3t", "sig=", "se=", "user"):
        assert secret not in out
    assert out.startswith("https://acct.blob.core.windows.net/fw/app-2.0.0.mcufw?***: giving up")
    assert "'https://***@cdn.example/x?***'" in out
    assert redact_text("no url here: 8 attempts") == "no url here: 8 attempts"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h.example/pkg.mcufw;token=s3cr3t", "https://h.example/pkg.mcufw;***"),
        ("https://h.example/a;sid=s3cr3t/pkg.mcufw", "https://h.example/a;***/pkg.mcufw"),
        ("https://h.example/p.mcufw;t=s3cr3t?sig=x", "https://h.example/p.mcufw;***?***"),
    ],
)
def test_path_parameters_are_masked(url: str, shown: str) -> None:
    # RFC 3986 §3.3: a ";param" in a path segment carries tokens on some servers (issue 17.8).
    assert redact_url(url) == shown
    assert "s3cr3t" not in redact_text(f"download of {url}; retrying")
