/* The boot decision (§10.3) and the slot policy the commands obey (§10.4): which slot
 * boots, which one is the fallback, how a staged slot is dropped or its trailer reclaimed.
 * No frames, no commands: a bootloader without the serial protocol links this alone. */
#include <string.h>

#include "bl_boot.h"
#include "bl_hal.h"
#include "bl_internal.h"

int bl_boot_fallback(bl_store_t *bl, int check_image) {
    bl_slot_t st[2];
    int i, first;
    bl_slot_status(bl, 0, &st[0]);
    bl_slot_status(bl, 1, &st[1]);
    first = st[1].generation > st[0].generation ? 1 : 0;
    for (i = 0; i < 2; i++) {
        int s = i ? 1 - first : first;
        if (st[s].state == BL_CONFIRMED &&
            (!check_image || bl_image_ok(bl, (unsigned)s, &st[s], NULL)))
            return s;
    }
    return -1;
}

int bl_slot_find(bl_store_t *bl, uint8_t a, uint8_t b) {
    unsigned i;
    for (i = 0; i < 2; i++) {
        bl_slot_t st;
        bl_slot_status(bl, i, &st);
        if (st.state == a || st.state == b) return (int)i;
    }
    return -1;
}

int bl_slot_make_room(bl_store_t *bl, unsigned slot, const bl_slot_t *st, unsigned needed) {
    bl_slot_t copy = *st;
    if (st->free >= needed) return 0;
    if (bl_trailer_erase(bl, slot) != 0) return -1;
    if (bl_trailer_append(bl, slot, BL_REC_BEGIN, copy.size, copy.sha256, copy.version) != 0)
        return -1;
    if (copy.stream_size &&
        bl_trailer_append(bl, slot, BL_REC_STREAM_, copy.stream_size, copy.stream_sha, 0) != 0)
        return -1;
    if (copy.state == BL_COMPLETE) return bl_trailer_append(bl, slot, BL_REC_COMPLETE, 0, 0, 0);
    if (copy.checkpoint)
        return bl_trailer_append(bl, slot, BL_REC_CHECKPOINT, copy.checkpoint, 0, 0);
    return 0;
}

int bl_slot_drop(bl_store_t *bl, unsigned slot) {
    bl_slot_t st;
    bl_slot_status(bl, slot, &st);
    if (st.free > 0) return bl_trailer_append(bl, slot, BL_REC_INVALID, 0, 0, 0);
    return bl_trailer_erase(bl, slot);
}

void bl_boot_decide(bl_store_t *bl, bl_boot_t *out) {
    bl_slot_t st[2];
    int trial = -1, s;
    (void)hal_hook(NULL, BL_EV_PHASE, BL_PH_BOOT, 0);
    out->mode = BL_MODE_BOOTLOADER;
    out->slot = 0xFF;
    out->trial = 0;
    bl_slot_status(bl, 0, &st[0]);
    bl_slot_status(bl, 1, &st[1]);
    for (s = 0; s < 2; s++)
        if (st[s].state == BL_TRIAL && (trial < 0 || st[s].generation > st[trial].generation))
            trial = s;
    if (trial >= 0) {
        const bl_slot_t *t = &st[trial];
        /* MUST (§10.3): attempts left, room for the verdict, and the bytes hash right. */
        if (t->boots < bl->cfg->max_trial_boots && t->free > 0 &&
            bl_image_ok(bl, (unsigned)trial, t, NULL) &&
            bl_trailer_append(bl, (unsigned)trial, BL_REC_BOOT, 0, 0, 0) == 0) {
            /* Left armed for the image: one that hangs before it confirms is reset, and
             * the next decision counts another attempt (§10.3). */
            if (bl->cfg->watchdog_ms) hal_watchdog_start(bl->cfg->watchdog_ms);
            out->mode = BL_MODE_APP;
            out->slot = (uint8_t)trial;
            out->trial = 1;
            return;
        }
        if (t->free > 0) (void)bl_trailer_append(bl, (unsigned)trial, BL_REC_INVALID, 0, 0, 0);
    }
    s = bl_boot_fallback(bl, 1);
    if (s >= 0) {
        out->mode = BL_MODE_APP;
        out->slot = (uint8_t)s;
    }
}

int bl_boot_confirm(bl_store_t *bl, unsigned slot) {
    bl_slot_t st;
    if (slot > 1) return BL_NO_IMAGE;
    bl_slot_status(bl, slot, &st);
    if (st.state == BL_CONFIRMED) return BL_OK;
    if (st.state != BL_TRIAL) return BL_NO_IMAGE;
    return bl_trailer_append(bl, slot, BL_REC_CONFIRMED, 0, 0, 0) ? BL_FLASH_ERROR : BL_OK;
}
