/* Raw LZMA1 with lc=0 lp=0 pb=0 and an end mark (§17.1), decoded as the bytes arrive.
 * Written from the format's description (the LZMA specification's range decoder, bit
 * trees and state machine); a coroutine, so it stops at any input byte and resumes at
 * the next DATA frame. Matches reach only inside the block and are read back from the
 * page buffer or the slot (bl_dec_back): no dictionary in RAM. */
#include "bl_dec_internal.h"

#if BL_WITH_COMPRESS

#define TOP (1u << 24)

/* The hot state lives in locals (registers) and goes back to the struct only when the
 * frame's input runs out (yield) or the block ends: one store per DATA frame, not per bit. */
#define NEED()                                                                           \
    do {                                                                                 \
        while (!in_n) {                                                                  \
            d->pc = __LINE__;                                                            \
            goto yield;                                                                  \
        case __LINE__:;                                                                  \
        }                                                                                \
    } while (0)

/* Take a byte into the range coder when its range is below 2^24. */
#define NORMALIZE()                                                                      \
    do {                                                                                 \
        if (range < TOP) {                                                               \
            NEED();                                                                      \
            range <<= 8;                                                                 \
            code = code << 8 | *in++;                                                    \
            in_n--;                                                                      \
        }                                                                                \
    } while (0)

/* One range-coded bit with probability *P into bit. It normalises before the bit (as
 * liblzma does), so a symbol is out as soon as its last bit's byte arrived; the end mark
 * takes the one normalisation left (the encoder flushed it). */
#define BIT(P)                                                                           \
    do {                                                                                 \
        uint16_t *p_;                                                                    \
        uint32_t b_;                                                                     \
        NORMALIZE();                                                                     \
        p_ = (P);                                                                        \
        b_ = (range >> 11) * *p_;                                                        \
        if (code < b_) {                                                                 \
            range = b_;                                                                  \
            *p_ = (uint16_t)(*p_ + ((2048u - *p_) >> 5));                                \
            bit = 0;                                                                     \
        } else {                                                                         \
            range -= b_;                                                                 \
            code -= b_;                                                                  \
            *p_ = (uint16_t)(*p_ - (*p_ >> 5));                                          \
            bit = 1;                                                                     \
        }                                                                                \
    } while (0)

/* n bits of a bit tree at probs[] into m (1 << n .. 2 << n - 1). */
#define TREE(PROBS, N)                                                                   \
    do {                                                                                 \
        for (m = 1, i = 0; i < (N); i++) {                                               \
            BIT(&(PROBS)[m]);                                                            \
            m = m << 1 | bit;                                                            \
        }                                                                                \
    } while (0)

static void init_probs(bl_lzma_t *z) {
    uint16_t *p = &z->is_match[0], *end = &z->lit[0x300 - 1];
    while (p <= end) *p++ = 1024; /* the probability arrays are adjacent u16 members */
}

int bl_lzma_run(bl_t *bl, bl_dec_t *d) {
    bl_lzma_t *z = &d->u.lz;
    uint32_t range = z->range, code = z->code, in_n = d->in_n, m = z->m, i = z->i;
    uint32_t sym = z->sym, state = z->state, match = z->match_byte, bit;
    const uint8_t *in = d->in;
    int st = DEC_MORE;
    uint8_t b;
    switch (d->pc) {
    case 0:
    init_probs(z);
    for (i = 0; i < 5; i++) {
        NEED();
        code = code << 8 | *in++;
        in_n--;
        if (i == 0 && code != 0) return BL_DECODE_ERROR;
    }
    range = 0xFFFFFFFFu;
    if (code == range) return BL_DECODE_ERROR;
    for (;;) {
        BIT(&z->is_match[state]);
        if (!bit) { /* literal, matched against the byte at rep0 after a match */
            sym = 1;
            if (state >= 7) {
                if ((st = bl_dec_back(bl, d, z->rep[0] + 1u, &b)) != BL_OK) return st;
                match = b;
                do { /* bit 8 of match: the match byte's next bit, high first */
                    match <<= 1;
                    BIT(&z->lit[((1u + (match >> 8 & 1u)) << 8) + sym]);
                    sym = sym << 1 | bit;
                } while (sym < 0x100 && (match >> 8 & 1u) == bit);
            }
            while (sym < 0x100) {
                BIT(&z->lit[sym]);
                sym = sym << 1 | bit;
            }
            if ((st = bl_dec_put(bl, d, (uint8_t)sym)) != BL_OK) return st;
            state = state < 4 ? 0 : state < 10 ? state - 3 : state - 6;
            continue;
        }
        BIT(&z->is_rep[state]);
        if (bit) {
            if (d->produced == 0) return BL_DECODE_ERROR;
            BIT(&z->rep_g0[state]);
            if (!bit) {
                BIT(&z->rep0_long[state]);
                if (!bit) { /* short rep: one byte from rep0 */
                    state = state < 7 ? 9 : 11;
                    if ((st = bl_dec_copy(bl, d, z->rep[0] + 1u, 1)) != BL_OK) return st;
                    continue;
                }
            } else {
                BIT(&z->rep_g1[state]);
                if (!bit) {
                    z->dist = z->rep[1];
                } else {
                    BIT(&z->rep_g2[state]);
                    if (!bit) {
                        z->dist = z->rep[2];
                    } else {
                        z->dist = z->rep[3];
                        z->rep[3] = z->rep[2];
                    }
                    z->rep[2] = z->rep[1];
                }
                z->rep[1] = z->rep[0];
                z->rep[0] = z->dist;
            }
            z->which = 1;
            state = state < 7 ? 8 : 11;
        } else {
            z->rep[3] = z->rep[2];
            z->rep[2] = z->rep[1];
            z->rep[1] = z->rep[0];
            z->which = 0;
            state = state < 7 ? 7 : 10;
        }
        /* the length: choice, choice2, then 3, 3 or 8 bits (pos state 0 only) */
        BIT(&z->len[z->which][0]);
        if (!bit) {
            TREE(z->len[z->which] + 2, 3);
            z->length = (uint16_t)(m - 8);
        } else {
            BIT(&z->len[z->which][1]);
            if (!bit) {
                TREE(z->len[z->which] + 10, 3);
                z->length = (uint16_t)(m - 8 + 8);
            } else {
                TREE(z->len[z->which] + 18, 8);
                z->length = (uint16_t)(m - 256 + 16);
            }
        }
        if (!z->which) { /* a new distance: slot, then reverse-coded or direct bits */
            TREE(z->slot[z->length < 3 ? z->length : 3], 6);
            z->tmp = (uint16_t)(m - 64);
            if (z->tmp < 4) {
                z->dist = z->tmp;
            } else {
                z->n = (uint16_t)((z->tmp >> 1) - 1);
                z->dist = (2u | (z->tmp & 1u)) << z->n;
                if (z->tmp < 14) {
                    sym = z->dist - z->tmp; /* base of the reverse tree */
                    for (m = 1, i = 0; i < z->n; i++) {
                        BIT(&z->spec[sym + m]);
                        m = m << 1 | bit;
                        z->dist += bit << i;
                    }
                } else {
                    for (i = 0; i < z->n - 4u; i++) {
                        NORMALIZE();
                        range >>= 1;
                        bit = code >= range;
                        if (bit) code -= range;
                        z->dist += bit << (z->n - 1u - i);
                    }
                    for (m = 1, i = 0; i < 4; i++) {
                        BIT(&z->align[m]);
                        m = m << 1 | bit;
                        z->dist += bit << i;
                    }
                }
            }
            if (z->dist == 0xFFFFFFFFu) { /* the end mark: the range coder must be flushed */
                NORMALIZE();
                if (code != 0) return BL_DECODE_ERROR;
                st = DEC_END;
                goto yield;
            }
            z->rep[0] = z->dist;
        }
        if (z->rep[0] >= d->produced) return BL_DECODE_ERROR; /* only inside the block */
        if ((st = bl_dec_copy(bl, d, z->rep[0] + 1u, z->length + 2u)) != BL_OK) return st;
    }
    }
    return BL_DECODE_ERROR;
yield: /* out of input (DEC_MORE) or at the end mark (DEC_END): keep the state */
    z->range = range;
    z->code = code;
    z->m = (uint16_t)m;
    z->i = (uint16_t)i;
    z->sym = (uint16_t)sym;
    z->state = (uint16_t)state;
    z->match_byte = (uint16_t)match;
    d->consumed += d->in_n - in_n;
    d->in = in;
    d->in_n = in_n;
    return st;
}

#endif
