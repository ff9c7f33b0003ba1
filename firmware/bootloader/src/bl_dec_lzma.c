/* Raw LZMA1 with lc=0 lp=0 pb=0 and an end mark (§17.1), decoded as the bytes arrive.
 * Written from the format's description (the LZMA specification's range decoder, bit
 * trees and state machine); a coroutine, so it stops at any input byte and resumes at
 * the next DATA frame. Matches reach only inside the block and are read back from the
 * page buffer or the slot (bl_dec_back): no dictionary in RAM. */
#include "bl_dec_internal.h"

#if BL_WITH_COMPRESS

#define TOP (1u << 24)

/* Take a byte into the range coder when its range is below 2^24. */
#define NORMALIZE()                                                                      \
    do {                                                                                 \
        if (z->range < TOP) {                                                            \
            DEC_NEED(d);                                                                 \
            z->range <<= 8;                                                              \
            z->code = z->code << 8 | DEC_TAKE(d);                                        \
        }                                                                                \
    } while (0)

/* One range-coded bit with probability *P into z->bit. It normalises before the bit (as
 * liblzma does), so a symbol is out as soon as its last bit's byte arrived; the end mark
 * takes the one normalisation left (the encoder flushed it). */
#define BIT(P)                                                                           \
    do {                                                                                 \
        uint16_t *p_;                                                                    \
        uint32_t b_;                                                                     \
        NORMALIZE();                                                                     \
        p_ = (P);                                                                        \
        b_ = (z->range >> 11) * *p_;                                                     \
        if (z->code < b_) {                                                              \
            z->range = b_;                                                               \
            *p_ = (uint16_t)(*p_ + ((2048u - *p_) >> 5));                                \
            z->bit = 0;                                                                  \
        } else {                                                                         \
            z->range -= b_;                                                              \
            z->code -= b_;                                                               \
            *p_ = (uint16_t)(*p_ - (*p_ >> 5));                                          \
            z->bit = 1;                                                                  \
        }                                                                                \
    } while (0)

/* n bits of a bit tree at probs[] into z->m (1 << n .. 2 << n - 1). */
#define TREE(PROBS, N)                                                                   \
    do {                                                                                 \
        z->m = 1;                                                                        \
        for (z->i = 0; z->i < (N); z->i++) {                                             \
            BIT(&(PROBS)[z->m]);                                                         \
            z->m = (uint16_t)(z->m << 1 | z->bit);                                       \
        }                                                                                \
    } while (0)

static void init_probs(bl_lzma_t *z) {
    uint16_t *p = &z->is_match[0], *end = &z->lit[0x300 - 1];
    while (p <= end) *p++ = 1024; /* the probability arrays are adjacent u16 members */
}

int bl_lzma_run(bl_t *bl, bl_dec_t *d) {
    bl_lzma_t *z = &d->u.lz;
    int st;
    uint8_t b;
    DEC_BEGIN(d);
    init_probs(z);
    for (z->i = 0; z->i < 5; z->i++) {
        DEC_NEED(d);
        z->code = z->code << 8 | DEC_TAKE(d);
        if (z->i == 0 && z->code != 0) return BL_DECODE_ERROR;
    }
    z->range = 0xFFFFFFFFu;
    if (z->code == z->range) return BL_DECODE_ERROR;
    for (;;) {
        BIT(&z->is_match[z->state]);
        if (!z->bit) { /* literal, matched against the byte at rep0 after a match */
            z->sym = 1;
            if (z->state >= 7) {
                if ((st = bl_dec_back(bl, d, z->rep[0] + 1u, &b)) != BL_OK) return st;
                z->match_byte = b;
                do {
                    z->match_bit = (uint8_t)(z->match_byte >> 7 & 1u);
                    z->match_byte = (uint8_t)(z->match_byte << 1);
                    BIT(&z->lit[((1u + z->match_bit) << 8) + z->sym]);
                    z->sym = (uint16_t)(z->sym << 1 | z->bit);
                } while (z->sym < 0x100 && z->match_bit == z->bit);
            }
            while (z->sym < 0x100) {
                BIT(&z->lit[z->sym]);
                z->sym = (uint16_t)(z->sym << 1 | z->bit);
            }
            if ((st = bl_dec_put(bl, d, (uint8_t)z->sym)) != BL_OK) return st;
            z->state = (uint16_t)(z->state < 4 ? 0 : z->state < 10 ? z->state - 3 : z->state - 6);
            continue;
        }
        BIT(&z->is_rep[z->state]);
        if (z->bit) {
            if (d->produced == 0) return BL_DECODE_ERROR;
            BIT(&z->rep_g0[z->state]);
            if (!z->bit) {
                BIT(&z->rep0_long[z->state]);
                if (!z->bit) { /* short rep: one byte from rep0 */
                    z->state = z->state < 7 ? 9 : 11;
                    if ((st = bl_dec_copy(bl, d, z->rep[0] + 1u, 1)) != BL_OK) return st;
                    continue;
                }
            } else {
                BIT(&z->rep_g1[z->state]);
                if (!z->bit) {
                    z->dist = z->rep[1];
                } else {
                    BIT(&z->rep_g2[z->state]);
                    if (!z->bit) {
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
            z->state = z->state < 7 ? 8 : 11;
        } else {
            z->rep[3] = z->rep[2];
            z->rep[2] = z->rep[1];
            z->rep[1] = z->rep[0];
            z->which = 0;
            z->state = z->state < 7 ? 7 : 10;
        }
        /* the length: choice, choice2, then 3, 3 or 8 bits (pos state 0 only) */
        BIT(&z->len[z->which][0]);
        if (!z->bit) {
            TREE(z->len[z->which] + 2, 3);
            z->length = (uint16_t)(z->m - 8);
        } else {
            BIT(&z->len[z->which][1]);
            if (!z->bit) {
                TREE(z->len[z->which] + 10, 3);
                z->length = (uint16_t)(z->m - 8 + 8);
            } else {
                TREE(z->len[z->which] + 18, 8);
                z->length = (uint16_t)(z->m - 256 + 16);
            }
        }
        if (!z->which) { /* a new distance: slot, then reverse-coded or direct bits */
            TREE(z->slot[z->length < 3 ? z->length : 3], 6);
            z->tmp = (uint16_t)(z->m - 64);
            if (z->tmp < 4) {
                z->dist = z->tmp;
            } else {
                z->n = (uint16_t)((z->tmp >> 1) - 1);
                z->dist = (2u | (z->tmp & 1u)) << z->n;
                if (z->tmp < 14) {
                    z->sym = (uint16_t)(z->dist - z->tmp); /* base of the reverse tree */
                    z->m = 1;
                    for (z->i = 0; z->i < z->n; z->i++) {
                        BIT(&z->spec[z->sym + z->m]);
                        z->m = (uint16_t)(z->m << 1 | z->bit);
                        z->dist += (uint32_t)z->bit << z->i;
                    }
                } else {
                    for (z->i = 0; z->i < z->n - 4; z->i++) {
                        NORMALIZE();
                        z->range >>= 1;
                        z->bit = z->code >= z->range;
                        if (z->bit) z->code -= z->range;
                        z->dist += (uint32_t)z->bit << (z->n - 1 - z->i);
                    }
                    z->m = 1;
                    for (z->i = 0; z->i < 4; z->i++) {
                        BIT(&z->align[z->m]);
                        z->m = (uint16_t)(z->m << 1 | z->bit);
                        z->dist += (uint32_t)z->bit << z->i;
                    }
                }
            }
            if (z->dist == 0xFFFFFFFFu) { /* the end mark: the range coder must be flushed */
                NORMALIZE();
                return z->code == 0 ? DEC_END : BL_DECODE_ERROR;
            }
            z->rep[0] = z->dist;
        }
        if (z->rep[0] >= d->produced) return BL_DECODE_ERROR; /* only inside the block */
        if ((st = bl_dec_copy(bl, d, z->rep[0] + 1u, z->length + 2u)) != BL_OK) return st;
    }
    DEC_END_CO();
}

#endif
