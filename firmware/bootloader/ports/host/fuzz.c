/* Hostile-input check of the core: seeded random and mutated frames straight into bl_feed,
 * over a RAM flash (vmcu-l0 geometry). Build it with -fsanitize=address,undefined: any
 * out-of-bounds access or undefined behaviour aborts. It also checks the §6 promise of this
 * implementation: every CRC-valid request with a known opcode gets an answer with its seq
 * and opcode | 0x80 (status MALFORMED etc. when the payload does not fit).
 * Usage: bl-fuzz SEED FRAMES [write=N] [sector=N] [trailer=N] [max_data=N] [window=N]
 *   -> prints "ok FRAMES answered=N", or the first violation (exit 1), or
 *      "refused: <reason>" (exit 2) when bl_init refuses the geometry.
 * The geometry options start from vmcu-l0, so odd parts (byte or half-word writes,
 * stop-and-wait windows, 32-byte writes) get the same hostile traffic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_models.h"

static bl_config_t geometry;
static const bl_config_t *cfg = &geometry; /* vmcu-l0 unless overridden */
static uint8_t flash[2u * (256u * 1024u + 16384u)];
static uint8_t out[1 << 16];
static size_t out_len;
static uint64_t rng;

static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

void hal_uart_write(const uint8_t *p, size_t n) {
    if (out_len + n > sizeof out) out_len = 0; /* only the latest answers matter */
    memcpy(out + out_len, p, n);
    out_len += n;
}
void hal_uart_flush(void) {}
int hal_uart_set_baud(uint32_t baud) { (void)baud; return 0; }
uint32_t hal_millis(void) { return 0; }
void hal_watchdog_start(uint32_t ms) { (void)ms; }
void hal_watchdog_feed(void) {}
size_t hal_uid(uint8_t *o, size_t max) { (void)max; o[0] = 0xAB; return 1; }
int hal_hook(struct bl *bl, int ev, uint32_t a, uint32_t b) { (void)bl; (void)ev; (void)a; (void)b; return 0; }

static int in_flash(uint32_t a, uint32_t n) { return a <= sizeof flash && n <= sizeof flash - a; }
int hal_flash_erase(uint32_t a) {
    if (a % cfg->sector_size || !in_flash(a, cfg->sector_size)) { printf("bad erase 0x%x\n", a); exit(1); }
    memset(flash + a, 0xFF, cfg->sector_size);
    return 0;
}
int hal_flash_program(uint32_t a, const uint8_t *p, uint32_t n) {
    uint32_t i;
    if (a % cfg->write_size || n % cfg->write_size || !in_flash(a, n)) {
        printf("bad program 0x%x+%u\n", a, n);
        exit(1);
    }
    for (i = 0; i < n; i++) flash[a + i] &= p[i];
    return 0;
}
int hal_flash_read(uint32_t a, uint8_t *p, uint32_t n) {
    if (!in_flash(a, n)) { printf("bad read 0x%x+%u\n", a, n); exit(1); }
    memcpy(p, flash + a, n);
    return 0;
}

static size_t cobs(const uint8_t *b, size_t n, uint8_t *o) {
    size_t i = 0, k = 0;
    for (;;) {
        size_t run = 0;
        while (i + run < n && b[i + run] && run < 254) run++;
        o[k++] = (uint8_t)(run + 1);
        memcpy(o + k, b + i, run);
        k += run;
        i += run;
        if (run == 254) { if (i == n) break; continue; }
        if (i == n) break;
        i++;
    }
    o[k++] = 0;
    return k;
}

/* A request the core will decode: a real opcode, a payload that is random, truncated or
 * built around the current transfer so deep paths (window, checkpoints, VERIFY) are hit. */
static uint8_t image_byte(uint32_t off) { return (uint8_t)(off * 31u + 7u + (off >> 8)); }

/* A request the core will decode: a real opcode, a payload that is random, truncated or
 * built around the device's transfer (white box: its expected offset), so the window,
 * draining, BUSY, checkpoints, VERIFY OK, ACTIVATE, the trial boot and CONFIRM are hit:
 * DATA carries image_byte() and BEGIN announces that image's true SHA-256 most times. */
static size_t make_body(const bl_t *bl, uint8_t *b, uint8_t *op, uint16_t seq) {
    size_t len = 0, i;
    uint32_t r = rnd();
    static const uint8_t weights[] = {1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
                                     4, 4, 4, 4, 5, 6, 7, 8, 9, 10};
    *op = weights[r % sizeof weights];
    if (r % 13 == 0) *op = (uint8_t)(rnd() & 0xFF); /* anything, responses included */
    if (*op == 4) {
        uint32_t frame = cfg->max_data;
        uint32_t off = bl->s.expected + (uint32_t)((int)(rnd() % 7) - 1) * frame, n = frame;
        if (rnd() % 9 == 0) off = rnd();
        if (rnd() % 11 == 0) off |= 1;
        if (rnd() % 6 == 0) n = rnd() % (frame + frame / 4 + 2);
        if (bl->s.open && off < bl->s.size && off + n > bl->s.size && rnd() % 2) n = bl->s.size - off;
        memcpy(b + 6, &off, 4);
        for (i = 0; i < n; i++) b[10 + i] = rnd() % 50 ? image_byte(off + (uint32_t)i) : (uint8_t)rnd();
        len = 4 + n;
    } else if (*op == 3 && rnd() % 3) { /* BEGIN of a plausible image, usually with its hash */
        uint32_t size = 1 + rnd() % 5000, k;
        bl_sha256_t h;
        if (rnd() % 7 == 0) size = rnd();
        memcpy(b + 6, &size, 4);
        bl_sha256_init(&h);
        for (k = 0; k < size && size < 100000; k++) {
            uint8_t c = image_byte(k);
            bl_sha256_update(&h, &c, 1);
        }
        bl_sha256_final(&h, b + 10);
        if (rnd() % 5 == 0) b[10] ^= 1;
        memset(b + 42, 0, 4);
        b[46] = (uint8_t)(rnd() % 90);
        for (i = 0; i < b[46]; i++) b[47 + i] = (uint8_t)(rnd() % 20 ? '0' + rnd() % 75 : rnd());
        len = 41 + b[46] - (rnd() % 8 == 0 ? rnd() % 41 : 0);
    } else {
        len = rnd() % 8 ? rnd() % 6 : rnd() % 200;
        for (i = 0; i < len; i++) b[6 + i] = (uint8_t)rnd();
        if (*op == 7 && len) b[6] = (uint8_t)(rnd() % 3 ? rnd() % 2 : rnd()); /* RUN, STAY, junk */
    }
    b[0] = 1;
    b[1] = *op;
    b[2] = (uint8_t)seq;
    b[3] = (uint8_t)(seq >> 8);
    b[4] = (uint8_t)len;
    b[5] = (uint8_t)(len >> 8);
    {
        uint32_t crc = bl_crc32(0xFFFFFFFFu, b, 6 + len) ^ 0xFFFFFFFFu;
        memcpy(b + 6 + len, &crc, 4);
    }
    return 10 + len;
}

static int answered(uint16_t seq, uint8_t op) {
    size_t i = 0;
    while (i < out_len) {
        uint8_t seg[8300];
        size_t j = i, n;
        while (j < out_len && out[j]) j++;
        if (j - i > sizeof seg) return 0;
        memcpy(seg, out + i, j - i);
        n = bl_cobs_decode(seg, j - i);
        if (bl_body_ok(seg, n) && seg[1] == (op | 0x80) && (seg[2] | seg[3] << 8) == seq) return 1;
        i = j + 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    static bl_t bl;
    static uint8_t body[9000], wire[9200];
    long frames = argc > 2 ? atol(argv[2]) : 10000, f, replied = 0;
    int i;
    rng = (argc > 1 ? strtoull(argv[1], NULL, 0) : 1) * 0x9E3779B97F4A7C15ull | 1;
    geometry = BL_MODELS[1]; /* vmcu-l0: small window, 4-byte writes */
    for (i = 3; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        uint32_t v = eq ? (uint32_t)strtoul(eq + 1, NULL, 0) : 0;
        if (!eq) { printf("bad option %s\n", argv[i]); return 1; }
        if (!strncmp(argv[i], "write=", 6)) geometry.write_size = (uint16_t)v;
        else if (!strncmp(argv[i], "sector=", 7)) geometry.sector_size = v;
        else if (!strncmp(argv[i], "trailer=", 8)) geometry.trailer_size = v;
        else if (!strncmp(argv[i], "max_data=", 9)) geometry.max_data = (uint16_t)v;
        else if (!strncmp(argv[i], "window=", 7)) geometry.window = v;
        else { printf("bad option %s\n", argv[i]); return 1; }
    }
    if (2u * (geometry.slot_size + geometry.trailer_size) > sizeof flash) {
        printf("geometry larger than the fuzzer's flash\n");
        return 1;
    }
    memset(flash, 0xFF, sizeof flash);
    if (bl_init(&bl, cfg, 1, 115200) != 0) {
        printf("refused: %s\n", bl_config_error(cfg));
        return 2;
    }
    for (f = 0; f < frames; f++) {
        uint8_t op;
        uint16_t seq = (uint16_t)rnd();
        size_t n = make_body(&bl, body, &op, seq), w;
        uint32_t mode = rnd() % 20;
        out_len = 0;
        if (mode == 0) { /* raw noise, sometimes long enough to overflow the buffer */
            size_t k, len = rnd() % 3 ? rnd() % 64 : rnd() % 9000;
            for (k = 0; k < len; k++) wire[k] = (uint8_t)rnd();
            wire[len] = 0;
            bl_feed(&bl, wire, len + 1);
            continue;
        }
        w = cobs(body, n, wire);
        if (mode == 1) wire[rnd() % (w - 1)] ^= (uint8_t)(1u << (rnd() % 8)); /* damaged */
        bl_feed(&bl, wire, w);
        /* Longer than the device's own largest request: it may drop it unanswered (§3.1). */
        if (mode != 1 && op >= 1 && op <= 10 && n <= (cfg->max_data + 4u > 121u ? cfg->max_data + 4u : 121u) + 10u) {
            if (!answered(seq, op)) {
                printf("frame %ld: request opcode %u seq %u not answered\n", f, op, seq);
                return 1;
            }
            replied++;
        }
        if (bl.reset_req) bl_init(&bl, cfg, bl.reset_req == 2, 115200); /* boot decision */
        if (bl.mode == BL_MODE_APP && rnd() % 3 == 0) (void)bl_app_confirm(&bl);
    }
    printf("ok %ld answered=%ld\n", frames, replied);
    return 0;
}
