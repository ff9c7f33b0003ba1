/* Simulation helpers shared by the host and QEMU ports (never in a real bootloader):
 * the factory image on blank flash and a virtual application after the boot decision. */
#ifndef SIM_APP_H
#define SIM_APP_H

#include "bl.h"

/* Program slot 0 with the Python simulator's synthetic factory app, CONFIRMED, if both
 * trailers are empty (before bl_init). */
void sim_factory_install(bl_store_t *st, const char *version);

typedef struct {
    uint32_t due;     /* ms at which the pending action runs */
    uint8_t pending;  /* 0 none, 1 self-confirm, 2 crash, 3 hang */
} sim_app_t;

/* After bl_init: schedule the virtual app's self-confirm (trial boot), its crash
 * (crashes == 1) or its hang (crashes == 2). */
void sim_app_booted(sim_app_t *app, bl_t *bl, uint32_t now, int crashes);
/* Returns 1 when the app crashed (the port then resets the MCU), 2 when it hangs from now
 * on (the port stops serving and feeding the watchdog: only the watchdog resets it). */
int sim_app_tick(sim_app_t *app, bl_t *bl, uint32_t now);

#endif
