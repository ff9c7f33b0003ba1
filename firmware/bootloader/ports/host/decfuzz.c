/* Damaged and hostile block streams (§17.2) through the whole C core with its decoders,
 * under AddressSanitizer and UBSan (tests/simulators/test_c_decoder_fuzz.py makes the
 * streams with simulators/mcu/fuzz.py's hostile_stream). Slot 0 holds the simulators'
 * factory image 1.0.0, CONFIRMED: the base of delta streams and the slot that must never
 * be written. stdin, little-endian, per stream until EOF:
 *   u8 delta, u32 image_size, sha256[32], u32 stream_len, stream, u32 frames,
 *   frames x (u32 offset, u32 length)
 * With a file argument, slot 0 holds that image (CONFIRMED) instead: bench/c_decoders.py
 * decodes real deltas against their base this way.
 * stdout: one line per stream, "<status of the last DATA answered> <VERIFY status or ->",
 * then "ok N". Exit 1 on a violation: a DATA unanswered or answered with another status,
 * a write into slot 0, an image byte programmed at or past the image's size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_models.h"
#include "sim_app.h"

static bl_config_t geometry;
static uint8_t flash[2u * (256u * 1024u + 16384u)];
static uint8_t out[1 << 16];
static size_t out_len;
static bl_t bl;

void hal_uart_write(const uint8_t *p, size_t n) {
    if (out_len + n > sizeof out) out_len = 0;
    memcpy(out + out_len, p, n);
    out_len += n;
}
void hal_uart_flush(void) {}
int hal_uart_set_baud(uint32_t baud) { (void)baud; return 0; }
uint32_t hal_millis(void) { return 0; }
void hal_watchdog_start(uint32_t ms) { (void)ms; }
void hal_watchdog_feed(void) {}
size_t hal_uid(uint8_t *o, size_t max) { (void)max; o[0] = 0xAB; return 1; }

static void fail(const char *why, uint32_t a, uint32_t b) {
    printf("violation: %s 0x%lx 0x%lx\n", why, (unsigned long)a, (unsigned long)b);
    exit(1);
}
int hal_hook(struct bl *b, int ev, uint32_t a, uint32_t e) {
    if (ev == BL_EV_PROGRAM && b && b->dec.on && e > b->dec.image_size)
        fail("programmed past the image", a, e);
    return 0;
}
static uint32_t slot1(void) { return geometry.slot_size + geometry.trailer_size; }
static int in_flash(uint32_t a, uint32_t n) { return a <= sizeof flash && n <= sizeof flash - a; }
int hal_flash_erase(uint32_t a) {
    if (a % geometry.sector_size || !in_flash(a, geometry.sector_size)) fail("bad erase", a, 0);
    if (bl.cfg && a < slot1()) fail("erase in the running slot", a, 0);
    memset(flash + a, 0xFF, geometry.sector_size);
    return 0;
}
int hal_flash_program(uint32_t a, const uint8_t *p, uint32_t n) {
    uint32_t i;
    if (a % geometry.write_size || n % geometry.write_size || !in_flash(a, n)) fail("bad program", a, n);
    if (bl.cfg && a < slot1()) fail("program in the running slot", a, n);
    for (i = 0; i < n; i++) flash[a + i] &= p[i];
    return 0;
}
int hal_flash_read(uint32_t a, uint8_t *p, uint32_t n) {
    if (!in_flash(a, n)) fail("bad read", a, n);
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

/* Send one request; the status byte of the last answer to it, or -1 if none. */
static int request(uint8_t op, const uint8_t *payload, size_t len) {
    static uint8_t body[9000], wire[9200];
    static uint16_t seq;
    uint32_t crc;
    size_t i = 0;
    int status = -1;
    seq++;
    body[0] = 1;
    body[1] = op;
    body[2] = (uint8_t)seq;
    body[3] = (uint8_t)(seq >> 8);
    body[4] = (uint8_t)len;
    body[5] = (uint8_t)(len >> 8);
    if (len) memcpy(body + 6, payload, len);
    crc = bl_crc32(0xFFFFFFFFu, body, 6 + len) ^ 0xFFFFFFFFu;
    memcpy(body + 6 + len, &crc, 4);
    out_len = 0;
    bl_feed(&bl, wire, cobs(body, 10 + len, wire));
    while (i < out_len) {
        uint8_t seg[9000];
        size_t j = i, n;
        while (j < out_len && out[j]) j++;
        memcpy(seg, out + i, j - i);
        n = bl_cobs_decode(seg, j - i);
        if (bl_body_ok(seg, n) && seg[1] == (op | 0x80) && (seg[2] | seg[3] << 8) == seq) status = seg[6];
        i = j + 1;
    }
    return status;
}

static int get(void *p, size_t n) { return fread(p, 1, n, stdin) == n; }
static uint32_t get32(void) {
    uint8_t b[4] = {0};
    if (!get(b, 4)) return 0;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Slot 0 := the file's bytes, CONFIRMED (BEGIN, COMPLETE, TRIAL, CONFIRMED records). */
static void install_base(bl_store_t *st, const char *path) {
    static uint8_t img[256u * 1024u];
    uint8_t sha[32];
    bl_sha256_t h;
    size_t n;
    FILE *f = fopen(path, "rb");
    if (!f) fail("cannot open the base image", 0, 0);
    n = fread(img, 1, sizeof img, f);
    fclose(f);
    if (n == 0 || n > geometry.slot_size) fail("base image size", (uint32_t)n, 0);
    memcpy(flash, img, n);
    bl_sha256_init(&h);
    bl_sha256_update(&h, img, n);
    bl_sha256_final(&h, sha);
    if (bl_trailer_append(st, 0, BL_REC_BEGIN, (uint32_t)n, sha, "1.0.0") ||
        bl_trailer_append(st, 0, BL_REC_COMPLETE, 0, 0, 0) ||
        bl_trailer_append(st, 0, BL_REC_TRIAL, 1, 0, 0) ||
        bl_trailer_append(st, 0, BL_REC_CONFIRMED, 0, 0, 0))
        fail("base trailer", 0, 0);
}

int main(int argc, char **argv) {
    static uint8_t stream[1 << 20], req[9000];
    long streams = 0;
    uint8_t delta;
    geometry = BL_MODELS[1]; /* vmcu-l0 */
    geometry.write_size = 1; /* the fuzz splits DATA anywhere (§17.2: stream offsets) */
    memset(flash, 0xFF, sizeof flash);
    {
        bl_store_t st = {&geometry, {0}};
        if (argc > 1) install_base(&st, argv[1]);
        else sim_factory_install(&st, "1.0.0");
    }
    if (bl_init(&bl, &geometry, 1, 115200) != 0) fail("refused", 0, 0);
    while (get(&delta, 1)) {
        uint32_t size = get32(), len, frames, f;
        uint8_t sha[32], base_sha[32];
        int status = BL_OK, verify = -1;
        bl_slot_t s0;
        if (!get(sha, 32)) break;
        len = get32();
        if (len > sizeof stream || !get(stream, len)) fail("bad input", len, 0);
        frames = get32();
        bl_slot_status(&bl.store, 0, &s0);
        memcpy(base_sha, s0.sha256, 32);
        /* BEGIN(size, sha, flags, "2.0.0") + tail */
        memcpy(req, &size, 4);
        memcpy(req + 4, sha, 32);
        req[36] = (uint8_t)(1u | (delta ? 2u : 0u));
        req[37] = req[38] = req[39] = 0;
        req[40] = 5;
        memcpy(req + 41, "2.0.0", 5);
        req[46] = 1;
        memcpy(req + 47, &len, 4);
        memset(req + 51, 0, 32); /* stream sha: each stream starts afresh (ABORT below) */
        memcpy(req + 83, delta ? base_sha : (const uint8_t *)req + 51, 32);
        if (request(3, req, 115) != BL_OK) fail("BEGIN refused", (uint32_t)streams, 0);
        for (f = 0; f < frames; f++) {
            uint32_t off = get32(), n = get32();
            int st;
            if (status != BL_OK) continue; /* the session ended: read the rest */
            if (off > len || n > len - off || n > 8192) fail("bad frame", off, n);
            memcpy(req, &off, 4);
            memcpy(req + 4, stream + off, n);
            st = request(4, req, 4 + n);
            if (st != BL_OK && st != BL_BUSY && st != BL_GAP && st != BL_DECODE_ERROR &&
                st != BL_BLOCK_LENGTH && st != BL_PATCH_REJECTED)
                fail("DATA answered", off, (uint32_t)st);
            if (st != BL_OK) status = st;
        }
        if (status == BL_OK && bl.s.open && bl.s.expected == len) verify = request(5, NULL, 0);
        printf("%d ", status);
        if (verify < 0) printf("-\n"); else printf("%d\n", verify);
        if (request(2, NULL, 0) < 0) fail("INFO unanswered", 0, 0);
        (void)request(9, NULL, 0); /* ABORT: the next stream starts from 0 */
        bl_slot_status(&bl.store, 0, &s0);
        if (s0.state != BL_CONFIRMED || memcmp(s0.sha256, base_sha, 32)) fail("slot 0 changed", 0, 0);
        streams++;
    }
    printf("ok %ld\n", streams);
    return 0;
}
