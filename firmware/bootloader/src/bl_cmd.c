/* Commands (§7, §9): each request's checks and effects, on top of the slot policy of
 * bl_boot.c; DATA is in bl_window.c. Section numbers refer to docs/protocol.md. */
#include <string.h>

#include "bl.h"
#include "bl_boot.h"
#include "bl_hal.h"
#include "bl_internal.h"

/* WINDOW | RESUME | SET_BAUD | APP_MODE (§8.2), COMPRESS and DELTA when built in (§17) */
#define CAPS (0x0Fu | (BL_WITH_COMPRESS ? BL_CAP_COMPRESS : 0u) | (BL_WITH_DELTA ? BL_CAP_DELTA : 0u) | \
              (BL_WITH_THUMB ? BL_CAP_THUMB : 0u))

static const uint32_t BAUDS[] = {9600,   19200,  38400,  57600,   115200,
                                 230400, 460800, 921600, 1000000, 2000000};

/* ------------------------------------------------------------------ power-on, confirm (§10.3) */

int bl_init(bl_t *bl, const bl_config_t *cfg, int stay, uint32_t baud) {
    bl_boot_t boot;
    memset(bl, 0, sizeof *bl);
    bl->running_slot = 0xFF;
    bl->baud = baud;
    bl->mode = BL_MODE_BOOTLOADER;
    if (!bl_config_ok(cfg)) return -1; /* cfg stays NULL: bl_feed ignores input */
    bl->cfg = bl->store.cfg = cfg;
    if (stay) return 0; /* RESET(STAY): straight into the bootloader, no appends */
    bl_boot_decide(&bl->store, &boot);
    bl->mode = boot.mode;
    bl->running_slot = boot.slot;
    bl->booted_trial = boot.trial;
    return 0;
}

int bl_init_app(bl_t *bl, const bl_config_t *cfg, unsigned slot, uint32_t baud) {
    if (bl_init(bl, cfg, 1, baud) != 0) return -1;
    if (slot < 2) { /* else: not started by our bootloader; serve as the bootloader would */
        bl->mode = BL_MODE_APP;
        bl->running_slot = (uint8_t)slot;
    }
    return 0;
}

int bl_app_confirm(bl_t *bl) {
    if (!bl->cfg || bl->running_slot == 0xFF) return BL_NO_IMAGE;
    bl_phase(bl, BL_PH_CONFIRM);
    return bl_boot_confirm(&bl->store, bl->running_slot);
}

/* ------------------------------------------------------------------ HELLO, INFO (§7.1, §7.2) */

static void on_hello(bl_t *bl, uint16_t seq, const uint8_t *p, size_t n) {
    uint8_t *o = bl->tx + 6;
    (void)p;
    if (n < 2) {
        bl_reply_status(bl, OP_HELLO, seq, BL_MALFORMED);
        return;
    }
    o[0] = BL_OK;
    o[1] = bl->cfg->protocol_version;
    o[2] = bl->mode;
    bl_put32(o + 3, CAPS);
    bl_put16(o + 7, bl->cfg->max_data);
    bl_put32(o + 9, bl->cfg->window);
    bl_reply(bl, OP_HELLO, seq, 13);
}

/* Strings are clamped so the largest INFO fits BL_TX_MAX (see bl_config_t). */
static uint8_t *put_str(uint8_t *o, const uint8_t *s, size_t n, size_t max) {
    if (n > max) n = max;
    *o++ = (uint8_t)n;
    memcpy(o, s, n);
    return o + n;
}

static void on_info(bl_t *bl, uint16_t seq) {
    const bl_config_t *c = bl->cfg;
    uint8_t *o = bl->tx + 6, *g;
    unsigned i;
    *o++ = BL_OK;
    *o++ = bl->mode;
    *o++ = bl->mode == BL_MODE_APP ? bl->running_slot : 0xFF;
    *o = (uint8_t)hal_uid(o + 1, 32);
    o += 1 + *o;
    o = put_str(o, (const uint8_t *)c->name, strlen(c->name), 24);
    o = put_str(o, (const uint8_t *)c->compat, strlen(c->compat), 48);
    o = put_str(o, (const uint8_t *)c->bootloader_version, strlen(c->bootloader_version), 16);
    g = o;
    bl_put32(g, c->slot_size);
    bl_put32(g + 4, c->sector_size);
    bl_put16(g + 8, c->write_size);
    bl_put16(g + 10, c->page_size);
    bl_put32(g + 12, c->erase_us);
    bl_put32(g + 16, c->program_us);
    bl_put32(g + 20, c->hash_us_per_kib);
    bl_put16(g + 24, c->boot_ms);
    g[26] = c->max_trial_boots;
    o += 27;
    *o++ = 2;
    for (i = 0; i < 2; i++) {
        bl_slot_t st;
        bl_slot_status(&bl->store, i, &st);
        *o++ = st.state;
        *o++ = st.boots;
        bl_put32(o, st.state == BL_EMPTY ? 0 : st.size);
        o += 4;
        if (st.state == BL_EMPTY) memset(o, 0, 32); else memcpy(o, st.sha256, 32);
        o += 32;
        o = put_str(o, (const uint8_t *)st.version, st.state == BL_EMPTY ? 0 : strlen(st.version),
                    BL_VERSION_MAX);
    }
    bl_reply(bl, OP_INFO, seq, (size_t)(o - (bl->tx + 6)));
}

/* ------------------------------------------------------------------ BEGIN (§9.3) */

static int utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i++];
        unsigned more = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2
                        : (c & 0xF8) == 0xF0 ? 3 : 9;
        if (more == 9 || (more == 1 && c < 0xC2) || i + more > n) return 0;
        while (more--)
            if ((s[i++] & 0xC0) != 0x80) return 0;
    }
    return 1;
}

static uint32_t checkpoint_interval(const bl_t *bl, uint32_t size) {
    uint32_t sector = bl->cfg->sector_size;
    int32_t budget = (int32_t)bl_trailer_capacity(&bl->store) - 1 - (int32_t)bl_tail_reserve(bl->cfg) - 2;
    uint64_t unit;
    uint32_t k;
    if (budget < 1) budget = 1;
    unit = (uint64_t)budget * sector;
    k = (uint32_t)((size + unit - 1) / unit);
    return k * sector > sector ? k * sector : sector;
}

static void on_begin(bl_t *bl, uint16_t seq, const uint8_t *p, size_t n) {
    bl_slot_t st;
    uint32_t size, flags, resume;
    size_t vlen;
    char version[BL_VERSION_MAX + 1];
    int fb;
    unsigned slot;
    bl_phase(bl, BL_PH_BEGIN);
    if (n < 41 || 41 + (size_t)p[40] > n) {
        bl_reply_status(bl, OP_BEGIN, seq, BL_MALFORMED);
        return;
    }
    size = bl_get32(p);
    flags = bl_get32(p + 36);
    vlen = p[40];
    if (bl_slot_find(&bl->store, BL_TRIAL, BL_TRIAL) >= 0) {
        bl_reply_status(bl, OP_BEGIN, seq, BL_BAD_STATE);
        return;
    }
    if (flags != 0) {
#if BL_WITH_COMPRESS
        int why = bl_dec_begin_flags(bl, p, n, flags);
#else
        int why = BL_UNSUPPORTED;
#endif
        if (why != BL_OK) {
            bl_reply_status(bl, OP_BEGIN, seq, (uint8_t)why);
            return;
        }
    }
    if (size > bl->cfg->slot_size) {
        bl_reply_status(bl, OP_BEGIN, seq, BL_TOO_LARGE);
        return;
    }
    if (size == 0 || vlen > BL_VERSION_MAX || !utf8_ok(p + 41, vlen) || memchr(p + 41, 0, vlen)) {
        bl_reply_status(bl, OP_BEGIN, seq, BL_MALFORMED);
        return;
    }
    memcpy(version, p + 41, vlen);
    version[vlen] = 0;
    /* Never the slot that boots: while it is the only confirmed image it is the fallback. */
    fb = bl_boot_fallback(&bl->store, 1);
    if (fb < 0) fb = bl_boot_fallback(&bl->store, 0); /* none verifies: nothing left to protect */
    slot = fb < 0 ? 0u : 1u - (unsigned)fb;
#if BL_WITH_COMPRESS
    if (!bl_dec_base_ok(bl, p, flags)) { /* refused before anything is written (§17) */
        bl_reply_status(bl, OP_BEGIN, seq, BL_DELTA_BASE_MISMATCH);
        return;
    }
#endif
    bl_slot_status(&bl->store, slot, &st);
    bl->s.open = 0;
    if (st.size == size && memcmp(st.sha256, p + 4, 32) == 0 && strcmp(st.version, version) == 0 &&
#if BL_WITH_COMPRESS
        bl_dec_same_stream(&st, p, flags) && /* a checkpoint counts its own stream's bytes */
#endif
        (st.state == BL_WRITING || st.state == BL_COMPLETE)) {
        if (bl_slot_make_room(&bl->store, slot, &st, bl_tail_reserve(bl->cfg) + 1) != 0) goto flash_error;
        bl_slot_status(&bl->store, slot, &st);
        resume = st.checkpoint;
    } else {
        if (bl_trailer_erase(&bl->store, slot) != 0 ||
            bl_trailer_append(&bl->store, slot, BL_REC_BEGIN, size, p + 4, version) != 0)
            goto flash_error;
#if BL_WITH_COMPRESS
        if (bl_dec_stream_record(bl, slot, p, flags) != 0) goto flash_error;
#endif
        resume = 0;
    }
    memset(&bl->s, 0, sizeof bl->s);
    bl_window_reset(bl);
    bl->s.open = 1;
    bl->s.slot = (uint8_t)slot;
    bl->s.size = size;
    bl->s.expected = bl->s.checkpoint = resume;
    bl->s.erased_to = resume - resume % bl->cfg->sector_size;
    bl->s.interval = checkpoint_interval(bl, size);
#if BL_WITH_COMPRESS
    resume = bl_dec_open(bl, p, flags, size, resume, st.state == BL_COMPLETE && resume == size);
    bl->s.expected = bl->s.checkpoint = resume; /* stream offsets from here on */
    if (bl->dec.on) bl->s.grid = resume;
#endif
    (void)hal_hook(bl, BL_EV_SIZE, size, 0);
    bl->tx[6] = BL_OK;
    bl->tx[7] = (uint8_t)slot;
    bl_put32(bl->tx + 8, resume);
    bl_reply(bl, OP_BEGIN, seq, 6);
    return;
flash_error:
    bl_reply_status(bl, OP_BEGIN, seq, BL_FLASH_ERROR);
}

/* ------------------------------------------------------------------ VERIFY .. SET_BAUD (§9.4) */

static void on_verify(bl_t *bl, uint16_t seq) {
    bl_slot_t st;
    int target;
    uint8_t *o = bl->tx + 6;
    bl_phase(bl, BL_PH_VERIFY);
    target = bl->s.open ? bl->s.slot : bl_slot_find(&bl->store, BL_WRITING, BL_COMPLETE);
    if (target < 0) {
        bl_reply_status(bl, OP_VERIFY, seq, BL_NO_IMAGE);
        return;
    }
    bl_slot_status(&bl->store, (unsigned)target, &st);
    if (bl->s.open && bl->s.expected < bl->s.size && st.state != BL_COMPLETE) {
        bl_reply_status(bl, OP_VERIFY, seq, BL_BAD_STATE);
        return;
    }
    if (!bl_image_ok(&bl->store, (unsigned)target, &st, o + 1)) {
        bl->s.open = 0;
        bl_reply_status(bl, OP_VERIFY, seq,
                     bl_slot_drop(&bl->store, (unsigned)target) ? BL_FLASH_ERROR : BL_VERIFY_FAILED);
        return;
    }
    if (st.state == BL_WRITING &&
        (bl_slot_make_room(&bl->store, (unsigned)target, &st, bl_tail_reserve(bl->cfg)) != 0 ||
         bl_trailer_append(&bl->store, (unsigned)target, BL_REC_COMPLETE, 0, 0, 0) != 0)) {
        bl_reply_status(bl, OP_VERIFY, seq, BL_FLASH_ERROR);
        return;
    }
    o[0] = BL_OK;
    bl_reply(bl, OP_VERIFY, seq, 33);
}

static void on_activate(bl_t *bl, uint16_t seq) {
    bl_slot_t st, other;
    int slot;
    uint32_t gen;
    bl_phase(bl, BL_PH_ACTIVATE);
    slot = bl_slot_find(&bl->store, BL_COMPLETE, BL_COMPLETE);
    if (slot < 0) { /* already TRIAL: a retry after a lost answer */
        bl_reply_status(bl, OP_ACTIVATE, seq, bl_slot_find(&bl->store, BL_TRIAL, BL_TRIAL) >= 0 ? BL_OK
                                                                                 : BL_NO_IMAGE);
        return;
    }
    bl_slot_status(&bl->store, (unsigned)slot, &st);
    bl_slot_status(&bl->store, 1u - (unsigned)slot, &other);
    gen = 1 + (st.generation > other.generation ? st.generation : other.generation);
    bl->s.open = 0;
    /* TRIAL goes in only with room behind it for every BOOT and the verdict. */
    if (bl_slot_make_room(&bl->store, (unsigned)slot, &st, bl_tail_reserve(bl->cfg) - 1) != 0 ||
        bl_trailer_append(&bl->store, (unsigned)slot, BL_REC_TRIAL, gen, 0, 0) != 0) {
        bl_reply_status(bl, OP_ACTIVATE, seq, BL_FLASH_ERROR);
        return;
    }
    bl_reply_status(bl, OP_ACTIVATE, seq, BL_OK);
}

static void on_abort(bl_t *bl, uint16_t seq) {
    int slot;
    bl_phase(bl, BL_PH_ABORT);
    slot = bl_slot_find(&bl->store, BL_WRITING, BL_COMPLETE);
    bl->s.open = 0;
    if (slot >= 0 && bl_slot_drop(&bl->store, (unsigned)slot) != 0) {
        bl_reply_status(bl, OP_ABORT, seq, BL_FLASH_ERROR);
        return;
    }
    bl_reply_status(bl, OP_ABORT, seq, BL_OK);
}

static void on_set_baud(bl_t *bl, uint16_t seq, const uint8_t *p, size_t n) {
    uint32_t baud;
    unsigned i, ok = 0;
    if (n < 4) {
        bl_reply_status(bl, OP_SET_BAUD, seq, BL_MALFORMED);
        return;
    }
    baud = bl_get32(p);
    for (i = 0; i < sizeof BAUDS / sizeof BAUDS[0]; i++) ok |= BAUDS[i] == baud;
    if (!ok) {
        bl_reply_status(bl, OP_SET_BAUD, seq, BL_BAD_BAUD);
        return;
    }
    bl_reply_status(bl, OP_SET_BAUD, seq, BL_OK);
    hal_uart_flush();
    if (hal_uart_set_baud(baud) != 0) return;
    bl->old_baud = bl->baud;
    bl->baud = baud;
    bl->baud_probation = 1;
    bl->baud_since = hal_millis();
}

void bl_tick(bl_t *bl, uint32_t now_ms) {
    if (!bl->cfg) return;
    /* The main loop runs: a watchdog left armed by a trial image (one that survives a
     * RESET(STAY), as an STM32 IWDG does) must not reset a serving bootloader. */
    hal_watchdog_feed();
    /* No valid frame within 1 s of a SET_BAUD: back to the old rate (§9.5). */
    if (bl->baud_probation && now_ms - bl->baud_since >= 1000u) {
        bl->baud_probation = 0;
        bl->baud = bl->old_baud;
        (void)hal_uart_set_baud(bl->old_baud);
    }
}

/* ------------------------------------------------------------------ dispatch (§6, §9.2) */

void bl_dispatch(bl_t *bl, uint8_t op, uint16_t seq, const uint8_t *p, size_t n) {
    int hook;
    if (op & 0x80u) return; /* a response: the MCU only serves requests */
    hook = hal_hook(bl, BL_EV_REQUEST, op, 0);
    if (hook == 1) return;
    if (hook == 2) {
        if (op == OP_DATA) bl_data_ack(bl, seq, BL_REFUSED, bl->s.open ? bl->s.expected : 0);
        else bl_reply_status(bl, op, seq, BL_REFUSED);
        return;
    }
    if (op < OP_HELLO || op > OP_SET_BAUD) {
        bl_reply_status(bl, op, seq, BL_UNSUPPORTED);
        return;
    }
    if (bl->mode == BL_MODE_APP && op != OP_HELLO && op != OP_INFO && op != OP_RESET &&
        op != OP_CONFIRM) {
        if (op == OP_DATA) bl_data_ack(bl, seq, BL_NOT_IN_BOOTLOADER, 0);
        else bl_reply_status(bl, op, seq, BL_NOT_IN_BOOTLOADER);
        return;
    }
    switch (op) {
    case OP_HELLO: on_hello(bl, seq, p, n); break;
    case OP_INFO: on_info(bl, seq); break;
    case OP_BEGIN: on_begin(bl, seq, p, n); break;
    case OP_DATA: bl_on_data(bl, seq, p, n); break;
    case OP_VERIFY: on_verify(bl, seq); break;
    case OP_ACTIVATE: on_activate(bl, seq); break;
    case OP_RESET:
        if (n < 1 || p[0] > 1) {
            bl_reply_status(bl, OP_RESET, seq, BL_MALFORMED);
            break;
        }
        bl_reply_status(bl, OP_RESET, seq, BL_OK);
        hal_uart_flush();
        bl->reset_req = (uint8_t)(1 + p[0]);
        break;
    case OP_CONFIRM: {
        int st = bl->mode == BL_MODE_APP ? bl_app_confirm(bl) : BL_NO_IMAGE;
        bl_reply_status(bl, OP_CONFIRM, seq, (uint8_t)st);
        break;
    }
    case OP_ABORT: on_abort(bl, seq); break;
    default: on_set_baud(bl, seq, p, n); break;
    }
}

