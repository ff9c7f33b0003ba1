"""When a failed update is tried again by itself, and when only an operator can retry it.

The decision is the failure's :class:`~protocols.failures.Kind`, the same for
every driver and for the download: a transient kind (a damaged or lost link,
a timeout, an unplug, a busy device, the network, the local disk, an app that
did not confirm in time) is one the same package can get past on a later try.
Every other kind says something about the package, the desired state, the
device or the configuration (signature, hash, compatibility, downgrade, 404,
size, a refusal, a locked part, a certificate that does not verify) and fails
the same way every time, so it waits for the operator: a new desired state, or
a new value of the desired ``retry`` counter.

Transient failures retry after ``base``, ``2 * base``, ... capped at ``max``, until
``attempts`` attempts in a row have failed; then they too wait for the operator.
"""

from __future__ import annotations

import random

from gateway.codes import kind_of
from gateway.config import PolicySettings
from protocols.backoff import Backoff, RetryPolicy
from protocols.failures import Kind


def retry_delay(
    kind: Kind, failures: int, policy: RetryPolicy, rng: random.Random | None = None
) -> float | None:
    """Seconds until the gateway tries again by itself after ``failures`` in a row, or
    None: only an operator (a new desired state or ``retry`` value) starts it again."""
    return policy.next_delay(failures, rng) if kind.transient else None


def is_transient(code: str) -> bool:
    """Whether a code (as the journal or a twin holds it) is retried by itself."""
    kind = kind_of(code)
    return kind is not None and kind.transient


#: +-10 % so MCUs that failed together (one CDN outage) do not retry together.
UPDATE_JITTER = (0.9, 1.1)


def update_retry_policy(policy: PolicySettings) -> RetryPolicy:
    """The automatic retries of failed updates, from ``[policy]``."""
    backoff = Backoff(policy.retry_base_s, policy.retry_max_s, UPDATE_JITTER)
    return RetryPolicy(policy.retry_attempts, backoff)
