/* Wire-vector harness (docs/protocol.md §13): checks the C frame layer against
 * tests/vectors/frames.json. Input lines: "<hex> <body>" (wire bytes, un-stuffed body).
 * For each: decoding the wire gives the body and passes the checks, encoding the body
 * gives the wire, and flipping any single bit of the wire makes the frame fail.
 * Prints "ok N" or the first mismatch; exits non-zero on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bl.h"
#include "bl_hal.h"

static uint8_t out[20000];
static size_t out_len;

void hal_uart_write(const uint8_t *p, size_t n) {
    memcpy(out + out_len, p, n);
    out_len += n;
}
void hal_uart_flush(void) {}
int hal_uart_set_baud(uint32_t baud) { (void)baud; return 0; }
int hal_flash_erase(uint32_t addr) { (void)addr; return -1; }
int hal_flash_program(uint32_t a, const uint8_t *p, uint32_t n) { (void)a; (void)p; (void)n; return -1; }
int hal_flash_read(uint32_t a, uint8_t *p, uint32_t n) { (void)a; (void)p; (void)n; return -1; }
size_t hal_uid(uint8_t *o, size_t m) { (void)o; (void)m; return 0; }
uint32_t hal_millis(void) { return 0; }
void hal_watchdog_start(uint32_t ms) { (void)ms; }
void hal_watchdog_feed(void) {}
int hal_hook(struct bl *bl, int ev, uint32_t a, uint32_t b) { (void)bl; (void)ev; (void)a; (void)b; return 0; }

static size_t unhex(const char *s, uint8_t *o) {
    size_t n = 0;
    unsigned v;
    while (sscanf(s, "%2x", &v) == 1) {
        o[n++] = (uint8_t)v;
        s += 2;
        if (!*s || *s == ' ' || *s == '\n') break;
    }
    return n;
}

static int decodes(const uint8_t *wire, size_t n, uint8_t *body, size_t *len) {
    uint8_t seg[20000];
    if (n < 2 || wire[n - 1] != 0 || memchr(wire, 0, n - 1)) return 0;
    memcpy(seg, wire, n - 1);
    *len = bl_cobs_decode(seg, n - 1);
    if (!bl_body_ok(seg, *len)) return 0;
    memcpy(body, seg, *len);
    return 1;
}

int main(void) {
    static char line[40000];
    static uint8_t wire[20000], body[20000], got[20000];
    int count = 0;
    while (fgets(line, sizeof line, stdin)) {
        char *sp = strchr(line, ' ');
        size_t wn, bn, gn, bit;
        if (!sp) continue;
        wn = unhex(line, wire);
        bn = unhex(sp + 1, body);
        if (!decodes(wire, wn, got, &gn) || gn != bn || memcmp(got, body, bn)) {
            printf("vector %d: wire does not decode to its body\n", count);
            return 1;
        }
        out_len = 0;
        bl_send_body(body, bn);
        if (out_len != wn || memcmp(out, wire, wn)) {
            printf("vector %d: body does not encode to its wire bytes\n", count);
            return 1;
        }
        for (bit = 0; bit < (wn - 1) * 8; bit++) {
            wire[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            if (decodes(wire, wn, got, &gn)) {
                printf("vector %d: bit %zu flipped still passes the CRC\n", count, bit);
                return 1;
            }
            wire[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        count++;
    }
    printf("ok %d\n", count);
    return count ? 0 : 1;
}
