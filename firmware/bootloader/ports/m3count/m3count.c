/* Instructions the Cortex-M3 build of the decoders executes, counted by QEMU.
 *
 * ports/host/decfuzz.c (the whole C core with its decoders, fed frames from a file)
 * runs on QEMU's mps2-an385 (a Cortex-M3 with 8 MiB of RAM: the slots fit) under
 * `-icount shift=0`, where the virtual clock advances one step per guest instruction
 * executed. SysTick counts that clock, so ticks x (instructions per tick, calibrated
 * below on a loop of known length) is the number of Thumb-2 instructions executed.
 * bl_dec_write is wrapped (-Wl,--wrap) to count decoding and page handling; the flash
 * HAL's program and erase (here byte loops over a RAM array; on a part, the flash
 * controller's time, modelled per part) are counted apart and subtracted.
 *
 * Files, from QEMU's working directory (semihosting): base.bin (slot 0's image) and
 * streams.bin (decfuzz.c's input). Output: decfuzz's lines, then
 * "m3count <instructions in bl_dec_write> <of them in the flash HAL> <instr per tick>". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bl.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)

int decfuzz_main(int argc, char **argv);
int main(void);
void Reset_Handler(void);
extern void initialise_monitor_handles(void);
extern uint32_t __bss_start__, __bss_end__, _estack;

static uint64_t dec_ticks, hal_ticks;
static uint32_t depth;

static uint32_t now(void) { return SYST_CVR; }
static uint32_t since(uint32_t t0) { return (t0 - SYST_CVR) & 0xFFFFFFu; } /* counts down */

int __real_bl_dec_write(bl_t *bl, const uint8_t *p, uint32_t n);
int __wrap_bl_dec_write(bl_t *bl, const uint8_t *p, uint32_t n) {
    uint32_t t0 = now();
    int r;
    depth++;
    r = __real_bl_dec_write(bl, p, n);
    depth--;
    dec_ticks += since(t0);
    return r;
}
int __real_hal_flash_program(uint32_t a, const uint8_t *p, uint32_t n);
int __wrap_hal_flash_program(uint32_t a, const uint8_t *p, uint32_t n) {
    uint32_t t0 = now();
    int r = __real_hal_flash_program(a, p, n);
    if (depth) hal_ticks += since(t0);
    return r;
}
int __real_hal_flash_erase(uint32_t a);
int __wrap_hal_flash_erase(uint32_t a) {
    uint32_t t0 = now();
    int r = __real_hal_flash_erase(a);
    if (depth) hal_ticks += since(t0);
    return r;
}

/* Instructions per SysTick tick: a loop of exactly 2 x n instructions (subs, bne). */
static uint32_t calibrate(void) {
    uint32_t n = 1000000u, t0 = now();
    __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n));
    return (2000000u + since(t0) / 2u) / since(t0);
}

int main(void) {
    static char *argv[] = {"m3count", "base.bin", 0};
    uint32_t per_tick;
    int rc;
    initialise_monitor_handles();
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u; /* enable, processor clock, no interrupt */
    per_tick = calibrate();
    if (!freopen("streams.bin", "rb", stdin)) {
        printf("m3count: cannot open streams.bin\n");
        return 1;
    }
    rc = decfuzz_main(2, argv);
    printf("m3count %llu %llu %lu\n", (unsigned long long)(dec_ticks * per_tick),
           (unsigned long long)(hal_ticks * per_tick), (unsigned long)per_tick);
    return rc;
}

void Reset_Handler(void) {
    uint32_t *d;
    for (d = &__bss_start__; d < &__bss_end__; d++) *d = 0;
    exit(main());
}

/* -nostartfiles drops crti.o, whose empty hooks newlib's exit() still calls. */
void _init(void) {}
void _fini(void) {}

static void fault(void) {
    printf("m3count: fault\n");
    exit(2);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&_estack, Reset_Handler, fault, fault, fault, fault, fault,
};
