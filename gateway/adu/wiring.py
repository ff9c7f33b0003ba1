"""Where the gateway process meets ADU: an ADU agent for an MCU the configuration selects."""

from __future__ import annotations

from typing import Any

from gateway.adu.agent import AduContext, AduMcuAgent
from gateway.adu.contract import CONTRACT_MODEL_ID
from gateway.adu.rootkeys import RootKeyStore, TrustedRoots
from gateway.adu.state import AduStateStore
from gateway.config import Config


def adu_model_id() -> str:
    return CONTRACT_MODEL_ID


#: One context per configuration (by identity: a Config holds unhashable mappings).
_CONTEXTS: dict[int, tuple[Config, AduContext]] = {}


def _context(config: Config) -> AduContext:
    held = _CONTEXTS.get(id(config))
    if held is not None and held[0] is config:
        return held[1]
    settings = config.adu
    keys = (
        RootKeyStore.with_test_keys(settings.test_root_keys_file)
        if settings.test_root_keys_file is not None
        else RootKeyStore.production()
    )
    context = AduContext(
        settings=settings,
        root_keys=TrustedRoots(keys, config.gateway.state_dir / "adu" / "rootkeypackage.json"),
        state=AduStateStore(config.gateway.state_dir / "adu"),
        ca_file=config.policy.download_ca_file,
    )
    _CONTEXTS[id(config)] = (config, context)
    return context


def adu_agent(config: Config, **kwargs: Any) -> AduMcuAgent:
    return AduMcuAgent(adu=_context(config), **kwargs)
