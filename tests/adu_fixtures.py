"""Where the real Microsoft-signed ADU data lives: the steering repo's ``shared/adu``.

That data is Microsoft's (MIT; its NOTICE.md says where each file comes from), so it
stays in ``shared/adu`` beside the checkout instead of being copied into this tree.
``MCU_GATEWAY_ADU_FIXTURES`` points elsewhere. A missing folder fails the test with
a line saying where the files are expected, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def adu_fixture(name: str) -> Path:
    """The path of one fixture file, failing the calling test if it is not there."""
    folder = Path(os.environ.get("MCU_GATEWAY_ADU_FIXTURES", _REPO.parent / "shared" / "adu"))
    path = folder / name
    if not path.is_file():
        pytest.fail(
            f"ADU fixture {path} is missing: put shared/adu beside the checkout "
            "or set MCU_GATEWAY_ADU_FIXTURES",
            pytrace=False,
        )
    return path
