/* Frame layer (§3-§6): COBS, the header and CRC-32, answers, and the receive path that
 * hands each CRC-checked request to the commands (bl_cmd.c). */
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_internal.h"

/* ------------------------------------------------------------------ transmit (§3, §5) */

/* COBS-encode one body straight to the UART; no trailing 0x01 after a final 0xFF block. */
void bl_send_body(const uint8_t *body, size_t n) {
    static const uint8_t delim = 0;
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
    hal_uart_write(&delim, 1);
}

void bl_reply(bl_t *bl, uint8_t op, uint16_t seq, size_t len) {
    uint8_t *t = bl->tx;
    t[0] = 1;
    t[1] = (uint8_t)(op | 0x80u);
    bl_put16(t + 2, seq);
    bl_put16(t + 4, (uint32_t)len);
    bl_put32(t + 6 + len, bl_crc32(0xFFFFFFFFu, t, 6 + len) ^ 0xFFFFFFFFu);
    bl_send_body(t, 10 + len);
}

void bl_reply_status(bl_t *bl, uint8_t op, uint16_t seq, uint8_t status) {
    bl->tx[6] = status;
    bl_reply(bl, op, seq, 1);
}

void bl_data_ack(bl_t *bl, uint16_t seq, uint8_t status, uint32_t next) {
    bl->tx[6] = status;
    bl_put32(bl->tx + 7, next);
    bl_reply(bl, OP_DATA, seq, 5);
}

/* ------------------------------------------------------------------ receive (§3, §6) */

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
    bl_dispatch(bl, b[1], bl_get16(b + 2), b + 6, bl_get16(b + 4));
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
