"""MCU models: different geometry, payload and window sizes, so negotiation is exercised."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.mcugw.packets import Geometry


@dataclass(frozen=True, slots=True)
class McuModel:
    name: str
    manufacturer: str
    hw_revision: str
    slot_size: int  # usable image bytes per slot (multiple of sector_size)
    trailer_size: int  # bytes reserved after each slot for the trailer log
    sector_size: int
    write_size: int
    page_size: int
    erase_us: int
    program_us: int
    hash_us_per_kib: int
    boot_ms: int
    max_trial_boots: int
    max_data: int
    window: int
    turnaround_us: int
    bootloader_version: str = "1.0.0"
    #: Block-stream decode time per KiB of output (§17.4), from the C decoders'
    #: measured Cortex-M3 instructions at 1.5 cycles each and 64 MHz (python -m
    #: bench.c_decoders): inflate's worst delta of the corpus (~175k cycles/KiB),
    #: LZMA's worst (LZMA_THUMB, ~285k cycles/KiB; plain LZMA ~247k).
    inflate_us_per_kib: int = 2730
    lzma_us_per_kib: int = 4450

    @property
    def compat(self) -> str:
        return f"{self.manufacturer}:{self.name}:{self.hw_revision}"

    @property
    def region_size(self) -> int:
        return self.slot_size + self.trailer_size

    @property
    def flash_size(self) -> int:
        return 2 * self.region_size

    def geometry(self) -> Geometry:
        return Geometry(
            slot_size=self.slot_size,
            sector_size=self.sector_size,
            write_size=self.write_size,
            page_size=self.page_size,
            erase_us=self.erase_us,
            program_us=self.program_us,
            hash_us_per_kib=self.hash_us_per_kib,
            boot_ms=self.boot_ms,
            max_trial_boots=self.max_trial_boots,
        )


MODELS: dict[str, McuModel] = {
    # Cortex-M4 class part: 4 KiB sectors at ~25 ms, 256 B pages at ~1 ms.
    "vmcu-f4": McuModel(
        name="vmcu-f4",
        manufacturer="contoso",
        hw_revision="rev2",
        slot_size=1024 * 1024 + 64 * 1024,
        trailer_size=4096,
        sector_size=4096,
        write_size=8,
        page_size=256,
        erase_us=25_000,
        program_us=1_000,
        hash_us_per_kib=100,
        boot_ms=50,
        max_trial_boots=3,
        max_data=1024,
        window=8192,
        turnaround_us=2_000,
    ),
    # Small Cortex-M0+ part: tiny RAM, so small frames and a short window.
    "vmcu-l0": McuModel(
        name="vmcu-l0",
        manufacturer="contoso",
        hw_revision="",
        slot_size=256 * 1024,
        trailer_size=4096,
        sector_size=2048,
        write_size=4,
        page_size=128,
        erase_us=20_000,
        program_us=600,
        hash_us_per_kib=400,
        boot_ms=30,
        max_trial_boots=2,
        max_data=256,
        window=1024,
        turnaround_us=1_000,
    ),
    # Big Cortex-M7 part: large sectors, wide writes, big buffers.
    "vmcu-h7": McuModel(
        name="vmcu-h7",
        manufacturer="fabrikam",
        hw_revision="b",
        slot_size=2 * 1024 * 1024,
        trailer_size=8192,
        sector_size=8192,
        write_size=32,
        page_size=512,
        erase_us=45_000,
        program_us=1_500,
        hash_us_per_kib=50,
        boot_ms=80,
        max_trial_boots=3,
        max_data=2048,
        window=16384,
        turnaround_us=1_500,
    ),
}

DEFAULT_MODEL = "vmcu-f4"
