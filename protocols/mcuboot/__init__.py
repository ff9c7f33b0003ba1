"""The ``mcuboot`` driver: MCUboot images managed over SMP (mcumgr) on a serial console.

Modules, bottom up: :mod:`.image` (MCUboot image header and TLVs), :mod:`.framing`
(the console's base64 lines with CRC16), :mod:`.smp` (sans-I/O SMP requests and
replies), :mod:`.errors` and :mod:`.driver` (the async part behind the seam).
"""
