/* The bootloader's main loop on the LM3S6965 under QEMU: the boot decision, then either a
 * real application image (copied from its slot into the application RAM region, checked
 * again, started through its vector table: VTOR, MSP, reset handler; README "Booting an
 * image") or, for the simulators' synthetic images, the virtual app of ports/common. */
#include <stdint.h>
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_models.h"
#include "board.h"
#include "sim_app.h"
#include "sim_faults.h"

static int crashes(void) {
    bl_slot_t st;
    if (g_bl.mode != BL_MODE_APP) return 0;
    bl_slot_status(&g_bl.store, g_bl.running_slot, &st);
    return sim_fault_crashes(st.version);
}

#ifndef BOARD_APP_REGION
#define BOARD_APP_REGION 0u /* this build keeps all RAM for itself: synthetic images only */
#endif

/* Does the slot hold an application built for this board (example/link.ld)? Its vector
 * table must put the stack in the application RAM and the reset handler (Thumb) inside
 * the image; the simulators' synthetic images do not, and get the virtual app instead. */
static int real_image(unsigned slot, uint32_t *size) {
    bl_slot_t st;
    uint32_t vec[2], pc;
    if (!BOARD_APP_REGION) return 0;
    bl_slot_status(&g_bl.store, slot, &st);
    if (st.size < 8 || st.size > BOARD_APP_REGION) return 0;
    if (hal_flash_read(bl_image_base(&g_bl.store, slot), (uint8_t *)vec, sizeof vec) != 0) return 0;
    pc = vec[1] & ~1u;
    if (vec[0] <= APP_LOAD + BOARD_APP_REGION || vec[0] > APP_RAM_END || (vec[0] & 3u)) return 0;
    if (!(vec[1] & 1u) || pc < APP_LOAD || pc >= APP_LOAD + st.size) return 0;
    *size = st.size;
    return 1;
}

/* RAM load (README "Booting an image"): copy the checked slot to APP_LOAD, check the copy
 * against the trailer's SHA-256 again, then start it as a reset would: VTOR, MSP, reset
 * handler. The watchdog the boot decision armed for a trial stays armed. Returns only if
 * the copy does not match (the bootloader then serves the protocol). */
static void start_image(unsigned slot, uint32_t size) {
    bl_slot_t st;
    bl_sha256_t h;
    uint8_t digest[32];
    uint32_t sp, pc;
    bl_slot_status(&g_bl.store, slot, &st);
    if (hal_flash_read(bl_image_base(&g_bl.store, slot), (uint8_t *)APP_LOAD, size) != 0) return;
    bl_sha256_init(&h);
    bl_sha256_update(&h, (const uint8_t *)APP_LOAD, size);
    bl_sha256_final(&h, digest);
    if (memcmp(digest, st.sha256, 32) != 0) return;
    HANDOFF->slot = slot;
    HANDOFF->trial = g_bl.booted_trial;
    HANDOFF->stay = 0;
    HANDOFF->magic = HANDOFF_MAGIC;
    hal_uart_flush();
    __asm__ volatile("cpsid i" ::: "memory");
    REG(0xE000E010u) = 0;           /* SysTick off */
    REG(0xE000E180u) = 0xFFFFFFFFu; /* NVIC: every interrupt disabled ... */
    REG(0xE000E280u) = 0xFFFFFFFFu; /* ... and none pending */
    REG(0xE000ED08u) = APP_LOAD;    /* VTOR: the image's vector table */
    sp = ((const uint32_t *)APP_LOAD)[0];
    pc = ((const uint32_t *)APP_LOAD)[1];
    __asm__ volatile("msr msp, %0\n\tcpsie i\n\tbx %1" : : "r"(sp), "r"(pc) : "memory");
    for (;;) {}
}

/* After every boot decision: start a real image, or let the virtual app run. */
static void booted(sim_app_t *app) {
    uint32_t size;
    if (g_bl.mode == BL_MODE_APP && real_image(g_bl.running_slot, &size))
        start_image(g_bl.running_slot, size);
    sim_app_booted(app, &g_bl, hal_millis(), crashes());
}

int main(void) {
    sim_app_t app = {0, 0};
    uint8_t buf[64];
    /* RESET(STAY) from a running image: it left the flag in RAM a system reset keeps. */
    int stay = HANDOFF->stay == HANDOFF_MAGIC;
    HANDOFF->stay = 0;
    HANDOFF->magic = 0;
    board_init();
    sim_factory_install(&g_bl.store, app_version);
    if (bl_init(&g_bl, &g_cfg, stay, board_baud()) != 0)
        port_fail("configuration refused", bl_config_error(&g_cfg));
    booted(&app);
    for (;;) {
        uint32_t n = rx_take(buf, sizeof buf), now;
        if (n && !g_deaf) bl_feed(&g_bl, buf, sim_fault_link(buf, n, 0));
        now = hal_millis();
        bl_tick(&g_bl, now);
        if (!g_bl.baud_probation) g_deaf = 0;
        switch (sim_app_tick(&app, &g_bl, now)) {
        case 1: g_bl.reset_req = 1; break; /* the app crashed */
        case 2: for (;;) {}                  /* the app hangs: only the watchdog gets out */
        default: break;
        }
        if (g_bl.reset_req) {
            int stay_req = g_bl.reset_req == 2;
            uint32_t until;
            board_uart_reset(); /* the answer leaves; the link is back at its power-on rate */
            until = hal_millis() + g_cfg.boot_ms;
            while ((int32_t)(hal_millis() - until) < 0) { /* what arrives while booting is lost */
                (void)rx_take(buf, sizeof buf);
                board_sleep();
            }
            (void)bl_init(&g_bl, &g_cfg, stay_req, board_baud()); /* accepted at power-on */
            booted(&app);
        }
        /* Sleep until the next byte or the next 10 ms tick, which the timers need. */
        if (!n) board_sleep();
    }
}
