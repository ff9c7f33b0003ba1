/* DATA and the receive window (§9.3): frames ahead of the next expected offset are held
 * (one bit per write unit), in-order bytes go to bl_sink_write, held ones follow as soon
 * as they become contiguous. Duplicates are idempotent by offset. */
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_internal.h"

/* Units of the window; window / write_size <= BL_WINDOW_MAX / BL_WRITE_MIN (bl_config_error). */
static unsigned units(const bl_t *bl) { return bl->cfg->window / bl->cfg->write_size; }
static unsigned unit_of(const bl_t *bl, uint32_t off) {
    return ((off - bl->s.grid) / bl->cfg->write_size) % units(bl);
}
static int held_get(const bl_t *bl, uint32_t off) {
    unsigned u = unit_of(bl, off);
    return (bl->held[u / 8] >> (u % 8)) & 1u;
}
static void held_set(bl_t *bl, uint32_t off, int v) {
    unsigned u = unit_of(bl, off);
    if (v) bl->held[u / 8] |= (uint8_t)(1u << (u % 8));
    else bl->held[u / 8] &= (uint8_t)~(1u << (u % 8));
}

void bl_window_reset(bl_t *bl) { memset(bl->held, 0, sizeof bl->held); }

/* Pass n in-order bytes on; whatever was held for them is no longer. */
static int accept(bl_t *bl, const uint8_t *src, uint32_t n) {
    uint32_t ws = bl->cfg->write_size, from = bl->s.expected, o;
    int status = bl_sink_write(bl, src, n);
    for (o = from - (from - bl->s.grid) % ws; o < bl->s.expected; o += ws) held_set(bl, o, 0);
    return status;
}

/* Pass on held bytes that became contiguous with `expected`; 1 if anything moved. */
static int drain(bl_t *bl, int *status) {
    const bl_config_t *c = bl->cfg;
    bl_session_t *s = &bl->s;
    uint32_t run = s->expected, start = s->expected;
    /* unit by unit; an encoded stream's expected may sit inside a unit (§17.2) */
    while (run < s->size && run - start < c->window && held_get(bl, run))
        run += c->write_size - (run - s->grid) % c->write_size;
    if (run > s->size) run = s->size;
    if (run == start) return 0;
    while (s->expected < run && *status == BL_OK) {
        uint32_t pos = s->expected % c->window, n = run - s->expected;
        if (pos + n > c->window) n = c->window - pos;
        *status = accept(bl, bl->win + pos, n);
    }
    return 1;
}

static int any_held(const bl_t *bl) {
    unsigned i;
    for (i = 0; i < (units(bl) + 7) / 8; i++)
        if (bl->held[i]) return 1;
    return 0;
}

void bl_on_data(bl_t *bl, uint16_t seq, const uint8_t *p, size_t len) {
    const bl_config_t *c = bl->cfg;
    bl_session_t *s = &bl->s;
    uint32_t off, n, end;
    int status, misaligned;
#if BL_WITH_COMPRESS
    int stream = bl->dec.on;
#else
    const int stream = 0;
#endif
    bl_phase(bl, BL_PH_DATA);
    if (!s->open) {
        bl_data_ack(bl, seq, BL_BAD_STATE, 0);
        return;
    }
    if (len < 4) {
        bl_data_ack(bl, seq, BL_MALFORMED, s->expected);
        return;
    }
    off = bl_get32(p);
    n = (uint32_t)(len - 4);
    end = off + n;
    /* An encoded transfer's stream takes any offsets in order (§17.2); the grid only
     * decides which out-of-order frames the window can hold (modulo 2^32 below grid). */
    misaligned = (off - s->grid) % c->write_size != 0;
    if (misaligned && !stream) {
        bl_data_ack(bl, seq, BL_MISALIGNED, s->expected);
        return;
    }
    if (end > s->size || end < off || n == 0 || n > c->max_data) {
        bl_data_ack(bl, seq, BL_OUT_OF_RANGE, s->expected);
        return;
    }
    if (n % c->write_size && end != s->size) { /* only the last frame may end off the grid */
        if (!stream) {
            bl_data_ack(bl, seq, BL_MISALIGNED, s->expected);
            return;
        }
        misaligned = 1;
    }
    if (end <= s->expected) { /* duplicate: idempotent by offset */
        bl_data_ack(bl, seq, BL_OK, s->expected);
        return;
    }
    if (end - s->expected > c->window) {
        bl_data_ack(bl, seq, BL_BUSY, s->expected);
        return;
    }
    if (off > s->expected && misaligned) { /* off the window's grid: not held, resent */
        bl_data_ack(bl, seq, BL_GAP, s->expected);
        return;
    }
    if (off > s->expected) { /* out of order: hold it in the window */
        uint32_t o;
        for (o = 0; o < n; o++) bl->win[(off + o) % c->window] = p[4 + o];
        for (o = off; o < end; o += c->write_size) held_set(bl, o, 1);
        bl_data_ack(bl, seq, BL_GAP, s->expected);
        return;
    }
    status = accept(bl, p + 4 + (s->expected - off), end - s->expected);
    if (status != BL_OK) {
        bl_data_ack(bl, seq, (uint8_t)status, s->expected);
        return;
    }
    bl_data_ack(bl, seq, BL_OK, s->expected);
    if (drain(bl, &status)) bl_data_ack(bl, seq, (uint8_t)status, s->expected);
    if (status == BL_OK && any_held(bl)) bl_data_ack(bl, seq, BL_GAP, s->expected);
}
