"""The ``mcuboot`` driver: MCUboot images managed over SMP (mcumgr) on a serial console.

Modules, bottom up: :mod:`.errors`, :mod:`.image` (MCUboot image header and TLVs),
:mod:`.framing` (the console's base64 lines with CRC16), :mod:`.client` (sans-I/O
SMP requests and replies), :mod:`.state` (typed ``image state``), :mod:`.link`
(requests over a transport, with deadlines from the link rate), :mod:`.upload`
(one image upload: chunks, window, offsets) and :mod:`.driver` (the seam).
"""
