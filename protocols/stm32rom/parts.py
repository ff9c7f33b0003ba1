"""STM32 parts the ``stm32-rom`` driver knows: product id -> family, layout, registers.

Figures are from ST's reference manuals and datasheets (RM0008 for F1, RM0090
for F4, AN2606 for product ids and bootloader versions). Erase and program
times are the datasheets' maxima: the driver derives its deadlines from them,
the simulator runs at the typical values.
"""

from __future__ import annotations

from dataclasses import dataclass

FLASH_BASE = 0x0800_0000
SRAM_BASE = 0x2000_0000

_KIB = 1024
#: F2/F4 sector sizes in KiB from sector 0 on (a bank of up to 1 MiB).
_F4_SECTORS_KIB = (16, 16, 16, 16, 64, *([128] * 7))


@dataclass(frozen=True, slots=True)
class Family:
    """What a family of parts shares: where its registers are and how it erases."""

    name: str  # e.g. "F1"
    uid_address: int  # 96-bit unique device id
    flash_size_address: int  # u16, flash size in KiB
    sectored: bool  # F2/F4 style 16/64/128 KiB sectors instead of uniform pages
    #: Worst-case erase time per KiB of erased area and program time per 4-byte word.
    erase_s_per_kib: float
    erase_s_min: float
    program_s_per_word: float
    #: Worst-case time to erase the whole flash in one operation (Mass Erase).
    mass_erase_s: float
    #: (address, length) of one Read Memory that covers the uid and flash-size registers.
    id_block: tuple[int, int] = (0, 0)

    def erase_time(self, size: int) -> float:
        return max(self.erase_s_min, self.erase_s_per_kib * size / _KIB)


F1 = Family("F1", 0x1FFF_F7E8, 0x1FFF_F7E0, False,
            erase_s_per_kib=0.040, erase_s_min=0.040, program_s_per_word=2 * 70e-6,
            mass_erase_s=0.040, id_block=(0x1FFF_F7E0, 20))  # fmt: skip
F4 = Family("F4", 0x1FFF_7A10, 0x1FFF_7A22, True,
            erase_s_per_kib=2.0 / 128, erase_s_min=0.5, program_s_per_word=100e-6,
            mass_erase_s=16.0,
            # The ROM checks a Read Memory's start address (before it knows the length,
            # AN3155 3.4) and refuses one at the uid or flash-size register, outside the
            # OTP area (RM0090 3.8, ends 0x1FFF7A0F): read from the OTP lock block on,
            # through the flash-size register (36 bytes).
            id_block=(0x1FFF_7A00, 0x24))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Part:
    """One product id as Get ID reports it."""

    pid: int
    model: str  # short, used in the compatibility string
    title: str
    family: Family
    page_size: int  # uniform page size (families without sectors)
    default_flash_kib: int  # when the flash-size register cannot be read

    def sectors(self, flash_kib: int) -> list[tuple[int, int]]:
        """(address, size) of every erasable unit in order, numbered from 0."""
        out: list[tuple[int, int]] = []
        addr = FLASH_BASE
        end = FLASH_BASE + flash_kib * _KIB
        if self.family.sectored:
            sizes = [s * _KIB for s in _F4_SECTORS_KIB]
            i = 0
            while addr < end:
                size = sizes[i] if i < len(sizes) else 128 * _KIB
                out.append((addr, size))
                addr += size
                i += 1
        else:
            while addr < end:
                out.append((addr, self.page_size))
                addr += self.page_size
        return out


_F1_PARTS = [
    (0x412, "stm32f10x-ld", "STM32F10x low-density", 1024, 32),
    (0x410, "stm32f10x-md", "STM32F10x medium-density", 1024, 128),
    (0x414, "stm32f10x-hd", "STM32F10x high-density", 2048, 512),
    (0x420, "stm32f10x-md-vl", "STM32F10x medium-density value line", 1024, 128),
    (0x428, "stm32f10x-hd-vl", "STM32F10x high-density value line", 2048, 512),
    (0x430, "stm32f10x-xl", "STM32F10x XL-density", 2048, 1024),
]
_F4_PARTS = [
    (0x411, "stm32f2xx", "STM32F2xx", 1024),
    (0x413, "stm32f40x", "STM32F405/407/415/417", 1024),
    (0x423, "stm32f401-bc", "STM32F401xB/C", 256),
    (0x433, "stm32f401-de", "STM32F401xD/E", 512),
    (0x431, "stm32f411", "STM32F411xC/E", 512),
]

PARTS: dict[int, Part] = {
    **{pid: Part(pid, m, t, F1, page, kib) for pid, m, t, page, kib in _F1_PARTS},
    **{pid: Part(pid, m, t, F4, 0, kib) for pid, m, t, kib in _F4_PARTS},
}


def part(pid: int) -> Part | None:
    return PARTS.get(pid)


__all__ = ["F1", "F4", "FLASH_BASE", "PARTS", "SRAM_BASE", "Family", "Part", "part"]
