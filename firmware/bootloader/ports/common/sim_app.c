#include "sim_app.h"

#include <string.h>

#include "bl_hal.h"
#include "bl_internal.h"

void sim_factory_install(bl_store_t *bl, const char *version) {
    bl_slot_t a, b;
    bl_sha256_t h;
    uint8_t seed[32], digest[32], chunk[256];
    uint32_t off, size = 16u * 1024u, sector = bl->cfg->sector_size;
    bl_slot_status(bl, 0, &a);
    bl_slot_status(bl, 1, &b);
    if (a.state != BL_EMPTY || b.state != BL_EMPTY || !version || !*version) return;
    bl_sha256_init(&h);
    bl_sha256_update(&h, (const uint8_t *)"factory-app ", 12);
    bl_sha256_update(&h, (const uint8_t *)version, strlen(version));
    bl_sha256_final(&h, seed);
    for (off = 0; off < size; off += sector) (void)hal_flash_erase(off);
    bl_sha256_init(&h);
    for (off = 0; off < size; off += sizeof chunk) {
        unsigned i;
        for (i = 0; i < sizeof chunk; i++) chunk[i] = seed[(off + i) % 32];
        (void)hal_flash_program(off, chunk, sizeof chunk);
        bl_sha256_update(&h, chunk, sizeof chunk);
    }
    bl_sha256_final(&h, digest);
    (void)bl_trailer_append(bl, 0, BL_REC_BEGIN, size, digest, version);
    (void)bl_trailer_append(bl, 0, BL_REC_COMPLETE, 0, 0, 0);
    (void)bl_trailer_append(bl, 0, BL_REC_TRIAL, 1, 0, 0);
    (void)bl_trailer_append(bl, 0, BL_REC_CONFIRMED, 0, 0, 0);
}

void sim_app_booted(sim_app_t *app, bl_t *bl, uint32_t now, int crashes) {
    app->pending = 0;
    if (bl->mode != BL_MODE_APP) return;
    if (crashes) {
        app->pending = crashes == 2 ? 3 : 2;
        app->due = now + 30u;
    } else if (bl->booted_trial) {
        app->pending = 1;
        app->due = now + 100u;
    }
}

int sim_app_tick(sim_app_t *app, bl_t *bl, uint32_t now) {
    if (!app->pending || (int32_t)(now - app->due) < 0) return 0;
    if (app->pending == 2 || app->pending == 3) {
        int what = app->pending == 2 ? 1 : 2;
        app->pending = 0;
        return what;
    }
    app->pending = 0;
    (void)bl_app_confirm(bl);
    return 0;
}
