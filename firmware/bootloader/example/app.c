/* Example application for the reference bootloader (LM3S6965 under QEMU): what a product's
 * firmware does to live in an A/B scheme. It links the protocol core in APP mode, so the
 * gateway can ask HELLO/INFO, CONFIRM it and RESET it into the bootloader; it prints a
 * one-line banner with its version on the UART, runs a self-test, and confirms itself
 * (bl_app_confirm) only if the test passed. It feeds the watchdog from its main loop.
 *
 * Build: make -C firmware/bootloader example VERSION=X [FAULT=hang|hardfault]
 *   FAULT=hang       stops dead before confirming, without feeding the watchdog
 *   FAULT=hardfault  executes an undefined instruction before confirming (HardFault, spins)
 * Either way only the watchdog the bootloader armed for the trial boot gets the part back,
 * and after max_trial_boots attempts the bootloader rolls back to the previous image. */
#include <stdint.h>
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "board.h"

#ifndef APP_VERSION
#define APP_VERSION "0.0.0"
#endif
#define APP_FAULT_NONE 0
#define APP_FAULT_HANG 1
#define APP_FAULT_HARDFAULT 2
#ifndef APP_FAULT
#define APP_FAULT APP_FAULT_NONE
#endif

static void uart_text(const char *s) { hal_uart_write((const uint8_t *)s, strlen(s)); }

/* One line on the UART, then 0x00: a COBS receiver (the gateway) drops it as one bad frame
 * instead of gluing it to the next answer. The same line goes to the debug console. */
static void banner(unsigned slot) {
    static const uint8_t delim = 0;
    char line[64] = "example app " APP_VERSION " running from slot ?\n";
    char *mark = strchr(line, '?');
    if (slot < 2) *mark = (char)('0' + slot);
    uart_text(line);
    hal_uart_write(&delim, 1);
    semi_err(line);
}

/* What a product checks before it vouches for itself: it runs where it was linked, its RAM
 * holds patterns, and its own bytes are the image the bootloader checked (SHA-256). */
static int self_test(unsigned slot) {
    static volatile uint32_t probe[64];
    bl_slot_t st;
    bl_sha256_t h;
    uint8_t digest[32];
    unsigned i;
    if (REG(0xE000ED08u) != APP_LOAD) return 0;
    for (i = 0; i < 64; i++) probe[i] = 0xA5A5A5A5u ^ i;
    for (i = 0; i < 64; i++)
        if (probe[i] != (0xA5A5A5A5u ^ i)) return 0;
    if (slot > 1) return 0;
    bl_slot_status(&g_bl.store, slot, &st);
    if (st.size == 0 || st.size > APP_REGION) return 0;
    bl_sha256_init(&h);
    bl_sha256_update(&h, (const uint8_t *)APP_LOAD, st.size);
    bl_sha256_final(&h, digest);
    return memcmp(digest, st.sha256, 32) == 0;
}

int main(void) {
    uint8_t buf[64];
    unsigned slot = HANDOFF->magic == HANDOFF_MAGIC ? HANDOFF->slot : 0xFFu;
    board_init();
    if (bl_init_app(&g_bl, &g_cfg, slot, 115200) != 0) semi_exit(2);
    banner(slot);
    if (APP_FAULT == APP_FAULT_HANG) for (;;) {}
    if (APP_FAULT == APP_FAULT_HARDFAULT) __asm__ volatile("udf #0");
    if (self_test(slot)) (void)bl_app_confirm(&g_bl);
    else semi_err("example app: self-test failed, not confirming\n");
    for (;;) { /* the product's work would go here */
        uint32_t n = rx_take(buf, sizeof buf);
        if (n) bl_feed(&g_bl, buf, n);
        bl_tick(&g_bl, hal_millis()); /* feeds the watchdog */
        if (g_bl.reset_req) {
            if (g_bl.reset_req == 2) HANDOFF->stay = HANDOFF_MAGIC; /* RESET(STAY) */
            board_reset();
        }
        if (!n) board_sleep();
    }
}
