/* Frame layer, command handlers, window and boot decision of the reference bootloader.
 * Section numbers refer to docs/protocol.md. */
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_internal.h"

#define CAPS 0x0Fu /* WINDOW | RESUME | SET_BAUD | APP_MODE (§8.2) */
enum { OP_HELLO = 1, OP_INFO, OP_BEGIN, OP_DATA, OP_VERIFY, OP_ACTIVATE, OP_RESET, OP_CONFIRM,
       OP_ABORT, OP_SET_BAUD };

static const uint32_t BAUDS[] = {9600,   19200,  38400,  57600,   115200,
                                 230400, 460800, 921600, 1000000, 2000000};

/* ------------------------------------------------------------------ transmit (§3, §5) */

/* COBS-encode one body straight to the UART; no trailing 0x01 after a final 0xFF block. */
static void send_body(const uint8_t *body, size_t n) {
    size_t i = 0;
    for (;;) {
        size_t run = 0;
        uint8_t code;
        while (i + run < n && body[i + run] != 0 && run < 254) run++;
        code = (uint8_t)(run + 1);
        hal_uart_write(&code, 1);
        hal_uart_write(body + i, run);
        i += run;
        if (run == 254) {
            if (i == n) break;
            continue;
        }
        if (i == n) break;
        i++; /* the zero implied by this block */
    }
    {
        static const uint8_t delim = 0;
        hal_uart_write(&delim, 1);
    }
}

/* Payload is already in bl->tx + 6. */
static void reply(bl_t *bl, uint8_t op, uint16_t seq, size_t len) {
    uint8_t *t = bl->tx;
    t[0] = 1;
    t[1] = (uint8_t)(op | 0x80u);
    bl_put16(t + 2, seq);
    bl_put16(t + 4, (uint32_t)len);
    bl_put32(t + 6 + len, bl_crc32(0xFFFFFFFFu, t, 6 + len) ^ 0xFFFFFFFFu);
    send_body(t, 10 + len);
}

static void reply_status(bl_t *bl, uint8_t op, uint16_t seq, uint8_t status) {
    bl->tx[6] = status;
    reply(bl, op, seq, 1);
}

static void data_ack(bl_t *bl, uint16_t seq, uint8_t status, uint32_t next) {
    bl->tx[6] = status;
    bl_put32(bl->tx + 7, next);
    reply(bl, OP_DATA, seq, 5);
}

/* ------------------------------------------------------------------ slots and trailers (§10) */

static unsigned tail_reserve(const bl_t *bl) { return 3u + bl->cfg->max_trial_boots; }

static void phase(bl_t *bl, uint32_t ph) { (void)hal_hook(bl, BL_EV_PHASE, ph, 0); }

/* Newest CONFIRMED slot (whose image hashes right, if check_image), else -1. */
static int newest_confirmed(bl_t *bl, int check_image) {
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

static int first_slot(bl_t *bl, uint8_t a, uint8_t b) {
    unsigned i;
    for (i = 0; i < 2; i++) {
        bl_slot_t st;
        bl_slot_status(bl, i, &st);
        if (st.state == a || st.state == b) return (int)i;
    }
    return -1;
}

/* Rewrite a staged (never bootable) slot's trailer to its minimal form when space runs out. */
static int make_room(bl_t *bl, unsigned slot, const bl_slot_t *st, unsigned needed) {
    bl_slot_t copy = *st;
    if (st->free >= needed) return 0;
    if (bl_trailer_erase(bl, slot) != 0) return -1;
    if (bl_trailer_append(bl, slot, BL_REC_BEGIN, copy.size, copy.sha256, copy.version) != 0)
        return -1;
    if (copy.state == BL_COMPLETE) return bl_trailer_append(bl, slot, BL_REC_COMPLETE, 0, 0, 0);
    if (copy.checkpoint) return bl_trailer_append(bl, slot, BL_REC_CHECKPOINT, copy.checkpoint, 0, 0);
    return 0;
}

/* Mark a staged slot INVALID, or erase its trailer when no position is left. */
static int drop_slot(bl_t *bl, unsigned slot) {
    bl_slot_t st;
    bl_slot_status(bl, slot, &st);
    if (st.free > 0) return bl_trailer_append(bl, slot, BL_REC_INVALID, 0, 0, 0);
    return bl_trailer_erase(bl, slot);
}

/* ------------------------------------------------------------------ boot decision (§10.3) */

static void boot_decision(bl_t *bl) {
    bl_slot_t st[2];
    int trial = -1, s;
    phase(bl, BL_PH_BOOT);
    bl_slot_status(bl, 0, &st[0]);
    bl_slot_status(bl, 1, &st[1]);
    for (s = 0; s < 2; s++)
        if (st[s].state == BL_TRIAL && (trial < 0 || st[s].generation > st[trial].generation))
            trial = s;
    if (trial >= 0) {
        const bl_slot_t *t = &st[trial];
        if (t->boots < bl->cfg->max_trial_boots && t->free > 0 &&
            bl_image_ok(bl, (unsigned)trial, t, NULL) &&
            bl_trailer_append(bl, (unsigned)trial, BL_REC_BOOT, 0, 0, 0) == 0) {
            bl->mode = BL_MODE_APP;
            bl->running_slot = (uint8_t)trial;
            bl->booted_trial = 1;
            return;
        }
        if (t->free > 0) (void)bl_trailer_append(bl, (unsigned)trial, BL_REC_INVALID, 0, 0, 0);
    }
    s = newest_confirmed(bl, 1);
    if (s >= 0) {
        bl->mode = BL_MODE_APP;
        bl->running_slot = (uint8_t)s;
    }
}

int bl_init(bl_t *bl, const bl_config_t *cfg, int stay, uint32_t baud) {
    memset(bl, 0, sizeof *bl);
    bl->running_slot = 0xFF;
    bl->baud = baud;
    bl->mode = BL_MODE_BOOTLOADER;
    if (!bl_config_ok(cfg)) return -1; /* cfg stays NULL: bl_feed ignores input */
    bl->cfg = cfg;
    if (!stay) boot_decision(bl);
    return 0;
}

int bl_app_confirm(bl_t *bl) {
    bl_slot_t st;
    if (!bl->cfg || bl->running_slot == 0xFF) return BL_NO_IMAGE;
    bl_slot_status(bl, bl->running_slot, &st);
    if (st.state == BL_CONFIRMED) return BL_OK;
    if (st.state != BL_TRIAL) return BL_NO_IMAGE;
    phase(bl, BL_PH_CONFIRM);
    return bl_trailer_append(bl, bl->running_slot, BL_REC_CONFIRMED, 0, 0, 0) ? BL_FLASH_ERROR
                                                                             : BL_OK;
}

/* ------------------------------------------------------------------ HELLO, INFO (§7.1, §7.2) */

static void on_hello(bl_t *bl, uint16_t seq, const uint8_t *p, size_t n) {
    uint8_t *o = bl->tx + 6;
    (void)p;
    if (n < 2) {
        reply_status(bl, OP_HELLO, seq, BL_MALFORMED);
        return;
    }
    o[0] = BL_OK;
    o[1] = bl->cfg->protocol_version;
    o[2] = bl->mode;
    bl_put32(o + 3, CAPS);
    bl_put16(o + 7, bl->cfg->max_data);
    bl_put32(o + 9, bl->cfg->window);
    reply(bl, OP_HELLO, seq, 13);
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
        bl_slot_status(bl, i, &st);
        *o++ = st.state;
        *o++ = st.boots;
        bl_put32(o, st.state == BL_EMPTY ? 0 : st.size);
        o += 4;
        if (st.state == BL_EMPTY) memset(o, 0, 32); else memcpy(o, st.sha256, 32);
        o += 32;
        o = put_str(o, (const uint8_t *)st.version, st.state == BL_EMPTY ? 0 : strlen(st.version),
                    BL_VERSION_MAX);
    }
    reply(bl, OP_INFO, seq, (size_t)(o - (bl->tx + 6)));
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
    int32_t budget = (int32_t)bl_trailer_capacity(bl) - 1 - (int32_t)tail_reserve(bl) - 2;
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
    phase(bl, BL_PH_BEGIN);
    if (n < 41 || 41 + (size_t)p[40] > n) {
        reply_status(bl, OP_BEGIN, seq, BL_MALFORMED);
        return;
    }
    size = bl_get32(p);
    flags = bl_get32(p + 36);
    vlen = p[40];
    if (first_slot(bl, BL_TRIAL, BL_TRIAL) >= 0) {
        reply_status(bl, OP_BEGIN, seq, BL_BAD_STATE);
        return;
    }
    if (flags != 0) {
        reply_status(bl, OP_BEGIN, seq, BL_UNSUPPORTED);
        return;
    }
    if (size > bl->cfg->slot_size) {
        reply_status(bl, OP_BEGIN, seq, BL_TOO_LARGE);
        return;
    }
    if (size == 0 || vlen > BL_VERSION_MAX || !utf8_ok(p + 41, vlen) || memchr(p + 41, 0, vlen)) {
        reply_status(bl, OP_BEGIN, seq, BL_MALFORMED);
        return;
    }
    memcpy(version, p + 41, vlen);
    version[vlen] = 0;
    /* Never the slot that boots: while it is the only confirmed image it is the fallback. */
    fb = newest_confirmed(bl, 1);
    if (fb < 0) fb = newest_confirmed(bl, 0); /* none verifies: nothing left to protect */
    slot = fb < 0 ? 0u : 1u - (unsigned)fb;
    bl_slot_status(bl, slot, &st);
    bl->s.open = 0;
    if (st.size == size && memcmp(st.sha256, p + 4, 32) == 0 &&
        (st.state == BL_WRITING || st.state == BL_COMPLETE)) {
        if (make_room(bl, slot, &st, tail_reserve(bl) + 1) != 0) goto flash_error;
        bl_slot_status(bl, slot, &st);
        resume = st.checkpoint;
    } else {
        if (bl_trailer_erase(bl, slot) != 0 ||
            bl_trailer_append(bl, slot, BL_REC_BEGIN, size, p + 4, version) != 0)
            goto flash_error;
        resume = 0;
    }
    memset(&bl->s, 0, sizeof bl->s);
    memset(bl->held, 0, sizeof bl->held);
    bl->held_any = 0;
    bl->s.open = 1;
    bl->s.slot = (uint8_t)slot;
    bl->s.size = size;
    bl->s.expected = bl->s.checkpoint = resume;
    bl->s.erased_to = resume - resume % bl->cfg->sector_size;
    bl->s.interval = checkpoint_interval(bl, size);
    (void)hal_hook(bl, BL_EV_SIZE, size, 0);
    bl->tx[6] = BL_OK;
    bl->tx[7] = (uint8_t)slot;
    bl_put32(bl->tx + 8, resume);
    reply(bl, OP_BEGIN, seq, 6);
    return;
flash_error:
    reply_status(bl, OP_BEGIN, seq, BL_FLASH_ERROR);
}

/* ------------------------------------------------------------------ DATA and the window (§9.3) */

static unsigned units(const bl_t *bl) { return bl->cfg->window / bl->cfg->write_size; }
static unsigned unit_of(const bl_t *bl, uint32_t off) {
    return (off / bl->cfg->write_size) % units(bl);
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

/* Program n bytes at `expected` (erasing sectors on first touch); 0 or a status. */
static int program(bl_t *bl, const uint8_t *src, uint32_t n) {
    const bl_config_t *c = bl->cfg;
    bl_session_t *s = &bl->s;
    uint32_t base = bl_image_base(bl, s->slot), off = s->expected, end = off + n;
    uint32_t whole = n - n % c->write_size, boundary, o;
    (void)hal_hook(bl, BL_EV_PROGRAM, off, end);
    while (s->erased_to < end) {
        if (hal_flash_erase(base + s->erased_to) != 0) return BL_FLASH_ERROR;
        s->erased_to += c->sector_size;
    }
    if (whole && hal_flash_program(base + off, src, whole) != 0) return BL_FLASH_ERROR;
    if (whole < n) { /* the image's last chunk: pad to write_size with 0xFF */
        uint8_t pad[BL_WRITE_MAX];
        memset(pad, 0xFF, c->write_size);
        memcpy(pad, src + whole, n - whole);
        if (hal_flash_program(base + off + whole, pad, c->write_size) != 0) return BL_FLASH_ERROR;
    }
    for (o = off - off % c->write_size; o < end; o += c->write_size) held_set(bl, o, 0);
    s->expected = end;
    boundary = end - end % s->interval;
    if (boundary > s->checkpoint && boundary < s->size) {
        bl_slot_t st;
        bl_slot_status(bl, s->slot, &st);
        /* A checkpoint only saves re-sending: never eat into what the update still needs. */
        if (st.free > tail_reserve(bl) + 1 &&
            bl_trailer_append(bl, s->slot, BL_REC_CHECKPOINT, boundary, 0, 0) != 0)
            return BL_FLASH_ERROR;
        s->checkpoint = boundary;
    }
    return BL_OK;
}

/* Program held bytes that became contiguous with `expected`; 1 if anything moved. */
static int drain(bl_t *bl, int *status) {
    const bl_config_t *c = bl->cfg;
    bl_session_t *s = &bl->s;
    uint32_t run = s->expected, start = s->expected;
    while (run < s->size && run - start < c->window && held_get(bl, run)) run += c->write_size;
    if (run > s->size) run = s->size;
    if (run == start) return 0;
    while (s->expected < run && *status == BL_OK) {
        uint32_t pos = s->expected % c->window, n = run - s->expected;
        if (pos + n > c->window) n = c->window - pos;
        *status = program(bl, bl->win + pos, n);
    }
    return 1;
}

static int any_held(const bl_t *bl) {
    unsigned i;
    for (i = 0; i < (units(bl) + 7) / 8; i++)
        if (bl->held[i]) return 1;
    return 0;
}

static void on_data(bl_t *bl, uint16_t seq, const uint8_t *p, size_t len) {
    const bl_config_t *c = bl->cfg;
    bl_session_t *s = &bl->s;
    uint32_t off, n, end;
    int status;
    phase(bl, BL_PH_DATA);
    if (!s->open) {
        data_ack(bl, seq, BL_BAD_STATE, 0);
        return;
    }
    if (len < 4) {
        data_ack(bl, seq, BL_MALFORMED, s->expected);
        return;
    }
    off = bl_get32(p);
    n = (uint32_t)(len - 4);
    end = off + n;
    if (off % c->write_size) {
        data_ack(bl, seq, BL_MISALIGNED, s->expected);
        return;
    }
    if (end > s->size || end < off || n == 0 || n > c->max_data) {
        data_ack(bl, seq, BL_OUT_OF_RANGE, s->expected);
        return;
    }
    if (n % c->write_size && end != s->size) { /* only the last frame may end off the grid */
        data_ack(bl, seq, BL_MISALIGNED, s->expected);
        return;
    }
    if (end <= s->expected) { /* duplicate: idempotent by offset */
        data_ack(bl, seq, BL_OK, s->expected);
        return;
    }
    if (end - s->expected > c->window) {
        data_ack(bl, seq, BL_BUSY, s->expected);
        return;
    }
    if (off > s->expected) { /* out of order: hold it in the window */
        uint32_t o;
        for (o = 0; o < n; o++) bl->win[(off + o) % c->window] = p[4 + o];
        for (o = off; o < end; o += c->write_size) held_set(bl, o, 1);
        data_ack(bl, seq, BL_GAP, s->expected);
        return;
    }
    status = program(bl, p + 4 + (s->expected - off), end - s->expected);
    if (status != BL_OK) {
        data_ack(bl, seq, (uint8_t)status, s->expected);
        return;
    }
    data_ack(bl, seq, BL_OK, s->expected);
    if (drain(bl, &status)) data_ack(bl, seq, (uint8_t)status, s->expected);
    if (status == BL_OK && any_held(bl)) data_ack(bl, seq, BL_GAP, s->expected);
}

/* ------------------------------------------------------------------ VERIFY .. SET_BAUD (§9.4) */

static void on_verify(bl_t *bl, uint16_t seq) {
    bl_slot_t st;
    int target;
    uint8_t *o = bl->tx + 6;
    phase(bl, BL_PH_VERIFY);
    target = bl->s.open ? bl->s.slot : first_slot(bl, BL_WRITING, BL_COMPLETE);
    if (target < 0) {
        reply_status(bl, OP_VERIFY, seq, BL_NO_IMAGE);
        return;
    }
    bl_slot_status(bl, (unsigned)target, &st);
    if (bl->s.open && bl->s.expected < bl->s.size && st.state != BL_COMPLETE) {
        reply_status(bl, OP_VERIFY, seq, BL_BAD_STATE);
        return;
    }
    if (!bl_image_ok(bl, (unsigned)target, &st, o + 1)) {
        bl->s.open = 0;
        reply_status(bl, OP_VERIFY, seq,
                     drop_slot(bl, (unsigned)target) ? BL_FLASH_ERROR : BL_VERIFY_FAILED);
        return;
    }
    if (st.state == BL_WRITING &&
        (make_room(bl, (unsigned)target, &st, tail_reserve(bl)) != 0 ||
         bl_trailer_append(bl, (unsigned)target, BL_REC_COMPLETE, 0, 0, 0) != 0)) {
        reply_status(bl, OP_VERIFY, seq, BL_FLASH_ERROR);
        return;
    }
    o[0] = BL_OK;
    reply(bl, OP_VERIFY, seq, 33);
}

static void on_activate(bl_t *bl, uint16_t seq) {
    bl_slot_t st, other;
    int slot;
    uint32_t gen;
    phase(bl, BL_PH_ACTIVATE);
    slot = first_slot(bl, BL_COMPLETE, BL_COMPLETE);
    if (slot < 0) { /* already TRIAL: a retry after a lost answer */
        reply_status(bl, OP_ACTIVATE, seq, first_slot(bl, BL_TRIAL, BL_TRIAL) >= 0 ? BL_OK
                                                                                 : BL_NO_IMAGE);
        return;
    }
    bl_slot_status(bl, (unsigned)slot, &st);
    bl_slot_status(bl, 1u - (unsigned)slot, &other);
    gen = 1 + (st.generation > other.generation ? st.generation : other.generation);
    bl->s.open = 0;
    /* TRIAL goes in only with room behind it for every BOOT and the verdict. */
    if (make_room(bl, (unsigned)slot, &st, tail_reserve(bl) - 1) != 0 ||
        bl_trailer_append(bl, (unsigned)slot, BL_REC_TRIAL, gen, 0, 0) != 0) {
        reply_status(bl, OP_ACTIVATE, seq, BL_FLASH_ERROR);
        return;
    }
    reply_status(bl, OP_ACTIVATE, seq, BL_OK);
}

static void on_abort(bl_t *bl, uint16_t seq) {
    int slot;
    phase(bl, BL_PH_ABORT);
    slot = first_slot(bl, BL_WRITING, BL_COMPLETE);
    bl->s.open = 0;
    if (slot >= 0 && drop_slot(bl, (unsigned)slot) != 0) {
        reply_status(bl, OP_ABORT, seq, BL_FLASH_ERROR);
        return;
    }
    reply_status(bl, OP_ABORT, seq, BL_OK);
}

static void on_set_baud(bl_t *bl, uint16_t seq, const uint8_t *p, size_t n) {
    uint32_t baud;
    unsigned i, ok = 0;
    if (n < 4) {
        reply_status(bl, OP_SET_BAUD, seq, BL_MALFORMED);
        return;
    }
    baud = bl_get32(p);
    for (i = 0; i < sizeof BAUDS / sizeof BAUDS[0]; i++) ok |= BAUDS[i] == baud;
    if (!ok) {
        reply_status(bl, OP_SET_BAUD, seq, BL_BAD_BAUD);
        return;
    }
    reply_status(bl, OP_SET_BAUD, seq, BL_OK);
    hal_uart_flush();
    if (hal_uart_set_baud(baud) != 0) return;
    bl->old_baud = bl->baud;
    bl->baud = baud;
    bl->baud_probation = 1;
    bl->baud_since = hal_millis();
}

void bl_tick(bl_t *bl, uint32_t now_ms) {
    if (!bl->cfg) return;
    /* No valid frame within 1 s of a SET_BAUD: back to the old rate (§9.5). */
    if (bl->baud_probation && now_ms - bl->baud_since >= 1000u) {
        bl->baud_probation = 0;
        bl->baud = bl->old_baud;
        (void)hal_uart_set_baud(bl->old_baud);
    }
}

/* ------------------------------------------------------------------ receive (§3, §6) */

static void dispatch(bl_t *bl, uint8_t op, uint16_t seq, const uint8_t *p, size_t n) {
    int hook;
    if (op & 0x80u) return; /* a response: the MCU only serves requests */
    hook = hal_hook(bl, BL_EV_REQUEST, op, 0);
    if (hook == 1) return;
    if (hook == 2) {
        if (op == OP_DATA) data_ack(bl, seq, BL_REFUSED, bl->s.open ? bl->s.expected : 0);
        else reply_status(bl, op, seq, BL_REFUSED);
        return;
    }
    if (op < OP_HELLO || op > OP_SET_BAUD) {
        reply_status(bl, op, seq, BL_UNSUPPORTED);
        return;
    }
    if (bl->mode == BL_MODE_APP && op != OP_HELLO && op != OP_INFO && op != OP_RESET &&
        op != OP_CONFIRM) {
        if (op == OP_DATA) data_ack(bl, seq, BL_NOT_IN_BOOTLOADER, 0);
        else reply_status(bl, op, seq, BL_NOT_IN_BOOTLOADER);
        return;
    }
    switch (op) {
    case OP_HELLO: on_hello(bl, seq, p, n); break;
    case OP_INFO: on_info(bl, seq); break;
    case OP_BEGIN: on_begin(bl, seq, p, n); break;
    case OP_DATA: on_data(bl, seq, p, n); break;
    case OP_VERIFY: on_verify(bl, seq); break;
    case OP_ACTIVATE: on_activate(bl, seq); break;
    case OP_RESET:
        if (n < 1 || p[0] > 1) {
            reply_status(bl, OP_RESET, seq, BL_MALFORMED);
            break;
        }
        reply_status(bl, OP_RESET, seq, BL_OK);
        hal_uart_flush();
        bl->reset_req = (uint8_t)(1 + p[0]);
        break;
    case OP_CONFIRM: {
        int st = bl->mode == BL_MODE_APP ? bl_app_confirm(bl) : BL_NO_IMAGE;
        reply_status(bl, OP_CONFIRM, seq, (uint8_t)st);
        break;
    }
    case OP_ABORT: on_abort(bl, seq); break;
    default: on_set_baud(bl, seq, p, n); break;
    }
}

size_t bl_cobs_decode(uint8_t *b, size_t n) {
    size_t in = 0, out = 0;
    while (in < n) {
        uint8_t code = b[in++];
        size_t run = (size_t)code - 1;
        if (code == 0 || in + run > n) return 0;
        memmove(b + out, b + in, run);
        out += run;
        in += run;
        if (code < 0xFF && in < n) b[out++] = 0;
    }
    return out;
}

int bl_body_ok(const uint8_t *b, size_t n) {
    uint16_t len;
    if (n < 10 || b[0] != 1) return 0;
    len = bl_get16(b + 4);
    if ((size_t)len + 10 != n) return 0;
    return bl_get32(b + 6 + len) == (bl_crc32(0xFFFFFFFFu, b, 6u + len) ^ 0xFFFFFFFFu);
}

void bl_send_body(const uint8_t *body, size_t n) { send_body(body, n); }

/* Decode the segment in place; drop it silently on any framing or CRC error (§3.1). */
static void segment(bl_t *bl) {
    uint8_t *b = bl->rx;
    size_t n = bl_cobs_decode(b, bl->rx_len);
    if (!bl_body_ok(b, n)) {
        bl->frames_bad++;
        (void)hal_hook(bl, BL_EV_BAD_FRAME, 0, 0);
        return;
    }
    bl->frames_ok++;
    bl->baud_probation = 0;
    dispatch(bl, b[1], bl_get16(b + 2), b + 6, bl_get16(b + 4));
}

void bl_feed(bl_t *bl, const uint8_t *p, size_t n) {
    size_t body, limit;
    if (!bl->cfg) return; /* refused by bl_init */
    /* The device's own limit: the COBS worst case of a body with max_data bytes of DATA. */
    body = (bl->cfg->max_data + 4u > 121u ? bl->cfg->max_data + 4u : 121u) + 10u;
    limit = body + body / 254u + 1u;
    if (limit > BL_RX_MAX) limit = BL_RX_MAX;
    while (n--) {
        uint8_t c = *p++;
        if (c == 0) {
            if (bl->rx_over) {
                bl->frames_bad++;
                (void)hal_hook(bl, BL_EV_BAD_FRAME, 0, 0);
            } else if (bl->rx_len) {
                segment(bl);
            }
            bl->rx_len = 0;
            bl->rx_over = 0;
            if (bl->reset_req) return; /* input after a RESET is lost while rebooting */
        } else if (!bl->rx_over) {
            if (bl->rx_len >= limit) bl->rx_over = 1;
            else bl->rx[bl->rx_len++] = c;
        }
    }
}
