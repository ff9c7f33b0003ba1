"""When a failed update is tried again by itself, and when only an operator can retry it.

Transient failures are those the same package can get past on a later try: the
network (the downloader already retries within one attempt; this is the next
level up), the serial link or MCU (timeouts, unplug, garbled frames) and an app
that did not confirm in time. Everything else says something about the package
or the desired state (signature, hash, compatibility, downgrade, 404, size,
malformed desired) and fails the same way every time, so it waits for the
operator: a new desired state, or a new value of the desired ``retry`` counter.

Transient failures retry after ``base``, ``2 * base``, ... capped at ``max``, until
``attempts`` attempts in a row have failed; then they too wait for the operator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.config import PolicySettings

#: Error codes (firmware.reasons and gateway.update) that a later attempt may cure.
TRANSIENT_CODES = frozenset(
    {
        "DOWNLOAD_FAILED",  # connection refused or dropped, 5xx, TLS hiccup
        "DOWNLOAD_TIMEOUT",  # the download deadline passed
        "CACHE_ERROR",  # local disk trouble (full, I/O error)
        "STORAGE_FULL",  # the gateway's disk is full: cured once space is freed
        "MCU_TIMEOUT",  # the MCU stopped answering
        "MCU_DISCONNECTED",  # unplugged or the port closed
        "MCU_PROTOCOL_ERROR",  # garbled frames beyond the session's own retries
        "MCU_BUSY",  # the bootloader asked us to come back later
        "APP_NOT_CONFIRMED",  # neither confirmed nor rolled back in time
    }
)


def is_transient(code: str) -> bool:
    return code in TRANSIENT_CODES


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_s: float = 30.0
    max_s: float = 900.0

    @classmethod
    def from_settings(cls, policy: PolicySettings) -> RetryPolicy:
        return cls(policy.retry_attempts, policy.retry_base_s, policy.retry_max_s)

    def next_delay(self, failures: int, rng: random.Random | None = None) -> float | None:
        """Seconds before attempt ``failures + 1``, or None when the budget is spent."""
        if failures >= self.attempts:
            return None
        delay = min(self.max_s, self.base_s * 2 ** (failures - 1))
        # +-10 % jitter so MCUs that failed together (one CDN outage) do not retry together.
        jitter = (rng or random.Random()).uniform(0.9, 1.1)
        return float(delay * jitter)
