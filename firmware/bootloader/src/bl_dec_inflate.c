/* Raw DEFLATE (RFC 1951) with a preset dictionary read from flash (§17.1), decoded as the
 * bytes arrive: a coroutine that stops at any input byte. Huffman decoding in the style of
 * a minimal inflate (canonical code counts and sorted symbols, one bit at a time); the
 * code checks of zlib's inflate (over-subscribed or incomplete codes, no end-of-block
 * code, distances beyond the dictionary) so both decoders refuse the same streams. */
#include "bl_dec_internal.h"

#if BL_WITH_COMPRESS

static const uint16_t LEN_BASE[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEN_EXTRA[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t DIST_BASE[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                       33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                       1025, 1537, 2049, 3073, 4097, 6145,  8193,  12289, 16385,
                                       24577};
static const uint8_t DIST_EXTRA[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint8_t CL_ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* Canonical code from n lengths; -1 when over-subscribed, or incomplete unless it is a
 * single code of length 1 (zlib's rule; `strict` for code-length codes: never incomplete). */
static int build(uint16_t *count, uint16_t *sym, const uint8_t *lens, unsigned n, int strict) {
    uint16_t offs[16];
    unsigned i, used = 0, max = 0;
    int left = 1;
    for (i = 0; i < 16; i++) count[i] = 0;
    for (i = 0; i < n; i++) count[lens[i]]++;
    count[0] = 0;
    for (i = 1; i < 16; i++) {
        left = left * 2 - count[i];
        if (left < 0) return -1;
        if (count[i]) max = i;
        used += count[i];
    }
    if (left > 0 && used && (strict || !(max == 1 && used == 1))) return -1;
    if (left > 0 && !used && strict) return -1;
    offs[1] = 0;
    for (i = 1; i < 15; i++) offs[i + 1] = (uint16_t)(offs[i] + count[i]);
    for (i = 0; i < n; i++)
        if (lens[i]) sym[offs[lens[i]]++] = (uint16_t)i;
    return 0;
}

/* Next bit into z->bits's low end; n bits read LSB-first into v. */
#define NEEDBITS(N)                                                                      \
    do {                                                                                 \
        while (z->nbits < (N)) {                                                         \
            DEC_NEED(d);                                                                 \
            z->bits |= (uint32_t)DEC_TAKE(d) << z->nbits;                                \
            z->nbits = (uint16_t)(z->nbits + 8);                                         \
        }                                                                                \
    } while (0)
#define DROP(N) (z->bits >>= (N), z->nbits = (uint16_t)(z->nbits - (N)))
#define BITS(N) (z->bits & ((1u << (N)) - 1u))

/* One symbol of the table (COUNT, SYM) into z->sym, one bit at a time. */
#define DECODE(COUNT, SYM)                                                               \
    do {                                                                                 \
        z->cur = 0;                                                                      \
        z->sum = 0;                                                                      \
        z->len = 0;                                                                      \
        for (;;) {                                                                       \
            NEEDBITS(1);                                                                 \
            z->cur = (uint16_t)(z->cur * 2u + BITS(1));                                  \
            DROP(1);                                                                     \
            if (++z->len > 15) return BL_DECODE_ERROR;                                   \
            if (z->cur < (COUNT)[z->len]) break;                                         \
            z->sum = (uint16_t)(z->sum + (COUNT)[z->len]);                               \
            z->cur = (uint16_t)(z->cur - (COUNT)[z->len]);                               \
        }                                                                                \
        z->sym = (SYM)[z->sum + z->cur];                                                 \
    } while (0)

int bl_inflate_run(bl_t *bl, bl_dec_t *d) {
    bl_inflate_t *z = &d->u.zl;
    int st;
    DEC_BEGIN(d);
    do {
        NEEDBITS(3);
        z->final = (uint8_t)BITS(1);
        z->type = (uint8_t)(z->bits >> 1 & 3u);
        DROP(3);
        if (z->type == 0) { /* stored: LEN, NLEN on the byte grid, then the bytes */
            DROP(z->nbits % 8u);
            NEEDBITS(16);
            z->n = (uint16_t)BITS(16);
            DROP(16);
            NEEDBITS(16);
            if ((uint16_t)~BITS(16) != z->n) return BL_DECODE_ERROR;
            DROP(16);
            while (z->n) {
                NEEDBITS(8);
                if ((st = bl_dec_put(bl, d, (uint8_t)BITS(8))) != BL_OK) return st;
                DROP(8);
                z->n--;
            }
            continue;
        }
        if (z->type == 3) return BL_DECODE_ERROR;
        if (z->type == 1) { /* fixed codes (RFC 1951 3.2.6) */
            for (z->i = 0; z->i < 288; z->i++)
                z->lens[z->i] = (uint8_t)(z->i < 144 ? 8 : z->i < 256 ? 9 : z->i < 280 ? 7 : 8);
            for (z->i = 0; z->i < 32; z->i++) z->lens[288 + z->i] = 5; /* 30, 31: invalid */
            (void)build(z->lcount, z->lsym, z->lens, 288, 0);
            (void)build(z->dcount, z->dsym, z->lens + 288, 32, 0);
        } else { /* dynamic: code-length code, then the two tables' lengths */
            NEEDBITS(14);
            z->hlit = (uint16_t)(BITS(5) + 257u);
            DROP(5);
            z->hdist = (uint16_t)(BITS(5) + 1u);
            DROP(5);
            z->hclen = (uint16_t)(BITS(4) + 4u);
            DROP(4);
            if (z->hlit > 286 || z->hdist > 30) return BL_DECODE_ERROR;
            for (z->i = 0; z->i < 19; z->i++) z->lens[z->i] = 0;
            for (z->i = 0; z->i < z->hclen; z->i++) {
                NEEDBITS(3);
                z->lens[CL_ORDER[z->i]] = (uint8_t)BITS(3);
                DROP(3);
            }
            /* the code-length code lives in the distance table until the lengths are in */
            if (build(z->dcount, z->dsym, z->lens, 19, 1) != 0) return BL_DECODE_ERROR;
            z->i = 0;
            while (z->i < z->hlit + z->hdist) {
                DECODE(z->dcount, z->dsym);
                if (z->sym < 16) {
                    z->lens[z->i++] = (uint8_t)z->sym;
                    continue;
                }
                if (z->sym == 16) {
                    if (z->i == 0) return BL_DECODE_ERROR;
                    NEEDBITS(2);
                    z->copy = (uint16_t)(3u + BITS(2));
                    DROP(2);
                    z->depth = z->lens[z->i - 1];
                } else if (z->sym == 17) {
                    NEEDBITS(3);
                    z->copy = (uint16_t)(3u + BITS(3));
                    DROP(3);
                    z->depth = 0;
                } else {
                    NEEDBITS(7);
                    z->copy = (uint16_t)(11u + BITS(7));
                    DROP(7);
                    z->depth = 0;
                }
                if (z->i + z->copy > z->hlit + z->hdist) return BL_DECODE_ERROR;
                while (z->copy--) z->lens[z->i++] = z->depth;
            }
            if (z->lens[256] == 0) return BL_DECODE_ERROR; /* no end-of-block code */
            /* distances move up next to the literal lengths' fixed slot */
            for (z->i = z->hdist; z->i-- > 0;) z->lens[288 + z->i] = z->lens[z->hlit + z->i];
            if (build(z->lcount, z->lsym, z->lens, z->hlit, 0) != 0 ||
                build(z->dcount, z->dsym, z->lens + 288, z->hdist, 0) != 0)
                return BL_DECODE_ERROR;
        }
        for (;;) { /* the block's symbols up to end-of-block */
            DECODE(z->lcount, z->lsym);
            if (z->sym < 256) {
                if ((st = bl_dec_put(bl, d, (uint8_t)z->sym)) != BL_OK) return st;
                continue;
            }
            if (z->sym == 256) break;
            z->sym = (uint16_t)(z->sym - 257u);
            if (z->sym >= 29) return BL_DECODE_ERROR;
            NEEDBITS(LEN_EXTRA[z->sym]);
            z->copy = (uint16_t)(LEN_BASE[z->sym] + BITS(LEN_EXTRA[z->sym]));
            DROP(LEN_EXTRA[z->sym]);
            DECODE(z->dcount, z->dsym);
            if (z->sym >= 30) return BL_DECODE_ERROR;
            NEEDBITS(DIST_EXTRA[z->sym]);
            z->dist = DIST_BASE[z->sym] + BITS(DIST_EXTRA[z->sym]);
            DROP(DIST_EXTRA[z->sym]);
            if ((st = bl_dec_copy(bl, d, z->dist, z->copy)) != BL_OK) return st;
        }
    } while (!z->final);
    return DEC_END;
    DEC_END_CO();
}

#endif
