/* Where the transfer's bytes go (§9.3): the in-order bytes the receive window releases
 * become slot image bytes here, and nowhere else. A stream decoder (compressed or delta
 * transfers, §17) replaces the body of bl_sink_write: it decodes the bytes it is given and
 * passes its output to bl_image_write, which alone writes a slot image. */
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_internal.h"

int bl_image_write(bl_t *bl, uint32_t image_off, const uint8_t *p, uint32_t n) {
    const bl_config_t *c = bl->cfg;
    bl_session_t *s = &bl->s;
    uint32_t base = bl_image_base(&bl->store, s->slot), end = image_off + n;
    uint32_t whole = n - n % c->write_size;
    (void)hal_hook(bl, BL_EV_PROGRAM, image_off, end);
    while (s->erased_to < end) { /* a sector is erased on its first write in this session */
        hal_watchdog_feed();
        if (hal_flash_erase(base + s->erased_to) != 0) return BL_FLASH_ERROR;
        s->erased_to += c->sector_size;
    }
    if (whole && hal_flash_program(base + image_off, p, whole) != 0) return BL_FLASH_ERROR;
    if (whole < n) { /* the image's last chunk: pad to write_size with 0xFF */
        uint8_t pad[BL_WRITE_MAX]; /* write_size <= BL_WRITE_MAX: bl_config_error */
        memset(pad, 0xFF, c->write_size);
        memcpy(pad, p + whole, n - whole);
        if (hal_flash_program(base + image_off + whole, pad, c->write_size) != 0)
            return BL_FLASH_ERROR;
    }
    return BL_OK;
}

int bl_sink_write(bl_t *bl, const uint8_t *p, uint32_t n) {
    bl_session_t *s = &bl->s;
    uint32_t boundary;
    int status;
#if BL_WITH_COMPRESS
    if (bl->dec.on) return bl_dec_write(bl, p, n); /* an encoded transfer (§17) */
#endif
    status = bl_image_write(bl, s->expected, p, n); /* raw: transfer offset = image offset */
    if (status != BL_OK) return status;
    s->expected += n;
    boundary = s->expected - s->expected % s->interval;
    if (boundary > s->checkpoint && boundary < s->size) {
        bl_slot_t st;
        bl_slot_status(&bl->store, s->slot, &st);
        /* A checkpoint only saves re-sending: never eat into what the update still needs.
         * It goes in after the bytes below it are programmed (§9.3). */
        if (st.free > bl_tail_reserve(bl->cfg) + 1 &&
            bl_trailer_append(&bl->store, s->slot, BL_REC_CHECKPOINT, boundary, 0, 0) != 0)
            return BL_FLASH_ERROR;
        s->checkpoint = boundary;
    }
    return BL_OK;
}
