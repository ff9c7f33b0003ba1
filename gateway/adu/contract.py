"""The ``deviceUpdate`` PnP component as ADU reads it: reported values, built sans-I/O.

Shapes from the reference agent (github Azure/iot-hub-device-update at b96895bb):
src/agent/adu_core_interface/src/adu_core_interface.c (``GetReportingJsonValue``, the
ACK in ``OrchestratorUpdateCallback``), device_properties.c, startup_msg_helper.c, and
src/agent/pnp_helper/src/pnp_protocol.c (the ``__t``/``ac``/``av`` envelopes);
the interface is dtmi:azure:iot:deviceUpdate;1 inside the contract model below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.adu.codes import AgentState, ResultCode, erc_hex
from gateway.adu.manifest import Workflow
from gateway.adu.settings import COMPAT_PROPERTY_NAMES

#: The model id an ADU device connects with (device_properties.c); the Python device
#: SDK sends it as ``model-id`` in the MQTT username when given as ``product_info``.
CONTRACT_MODEL_ID = "dtmi:azure:iot:deviceUpdateContractModel;3"
COMPONENT = "deviceUpdate"
#: ``aduVer``: the reference agent sends "DU;agent/<version>"; this is another agent.
ADU_VERSION = "mcu-gateway;agent/0.1.0"
#: ``resultDetails`` longer than this is cut: the twin holds 32 KB for every property.
MAX_DETAILS = 512


def component(**properties: Any) -> dict[str, Any]:
    """A reported patch of the ``deviceUpdate`` component (pnp_protocol.c marks it ``__t: c``)."""
    return {COMPONENT: {"__t": "c", **properties}}


def device_properties(manufacturer: str, model: str) -> dict[str, Any]:
    return {
        "manufacturer": manufacturer,
        "model": model,
        "contractModelId": CONTRACT_MODEL_ID,
        "aduVer": ADU_VERSION,
        "interfaceId": None,  # device_properties.c clears the v1 field
    }


def ack(value: dict[str, Any], desired_version: int) -> dict[str, Any]:
    """The ACK of a desired ``service`` value: status 200 for its ``$version``.

    Like the reference agent, the echo leaves out the signature and file URLs
    (they are large, and the URLs may carry tokens).
    """
    echo = {**value, "updateManifestSignature": None, "fileUrls": None}
    return component(service={"value": echo, "ac": 200, "ad": "", "av": desired_version})


@dataclass(frozen=True)
class InstallResult:
    """``lastInstallResult``: one step (this agent runs one step per update)."""

    result_code: int
    erc: int = 0
    details: str = ""

    def as_json(self, *, with_steps: bool = True) -> dict[str, Any]:
        one = {
            "resultCode": self.result_code,
            "extendedResultCodes": erc_hex(self.erc),
            "resultDetails": self.details[:MAX_DETAILS],
        }
        # DeploymentInProgress clears the last deployment's stepResults (GetReportingJsonValue).
        return {**one, "stepResults": {"step_0": dict(one)} if with_steps else None}


IN_PROGRESS = InstallResult(ResultCode.DEPLOYMENT_IN_PROGRESS_SUCCESS)


def workflow_echo(workflow: Workflow) -> dict[str, Any]:
    echo: dict[str, Any] = {"action": workflow.action, "id": workflow.id}
    if workflow.retry_timestamp is not None:
        echo["retryTimestamp"] = workflow.retry_timestamp
    return echo


def agent_report(
    state: AgentState,
    *,
    workflow: Workflow | None = None,
    result: InstallResult | None = None,
    installed_update_id: str | None = None,
) -> dict[str, Any]:
    """The ``agent`` property: state, workflow echo, installedUpdateId, lastInstallResult."""
    agent: dict[str, Any] = {"state": int(state)}
    if workflow is not None:
        agent["workflow"] = workflow_echo(workflow)
    if installed_update_id is not None:
        agent["installedUpdateId"] = installed_update_id
    if result is not None:
        agent["lastInstallResult"] = result.as_json(
            with_steps=state is not AgentState.DEPLOYMENT_IN_PROGRESS
        )
    return agent


def startup_report(manufacturer: str, model: str) -> dict[str, Any]:
    """What the agent says once connected (startup_msg_helper.c): who it is."""
    return {
        "deviceProperties": device_properties(manufacturer, model),
        "compatPropertyNames": COMPAT_PROPERTY_NAMES,
    }
