"""This project's own virtual MCU (mcugw) as a :class:`~simulators.registry.SimulatorSpec`.

``mcu-gateway sim`` serves it itself (``--impl``, ``--count``, the C builds), so
``main`` is None; its boards are :data:`simulators.mcu.models.MODELS`.
"""

from __future__ import annotations

from simulators.registry import SimulatorSpec

SPEC = SimulatorSpec(
    name="mcugw",
    summary="this project's virtual MCU: A/B slots, trial boot, resume, compression, delta",
    main=None,
)
