/* Stream decoders for encoded transfers (docs/protocol.md §17), compiled in with
 * -DBL_WITH_COMPRESS=1 (LZMA and DEFLATE blocks, dictionaries from the slot being written)
 * and -DBL_WITH_DELTA=1 (DEFLATE blocks may also read the image in the fallback slot).
 * No window in RAM: every back-reference and every dictionary byte is read back from
 * flash (hal_flash_read; a memory-mapped slot on a Cortex-M), except the decoded bytes
 * still waiting in the page buffer. */
#ifndef BL_DEC_H
#define BL_DEC_H

#include <stdint.h>

#ifndef BL_WITH_COMPRESS
#define BL_WITH_COMPRESS 0
#endif
#ifndef BL_WITH_DELTA
#define BL_WITH_DELTA 0
#endif
/* LZMA_THUMB blocks (codec 3: LZMA over the ARM-Thumb branch filter), with COMPRESS. */
#ifndef BL_WITH_THUMB
#define BL_WITH_THUMB BL_WITH_COMPRESS
#endif
#if BL_WITH_DELTA && !BL_WITH_COMPRESS
#error "BL_WITH_DELTA needs BL_WITH_COMPRESS"
#endif
#if BL_WITH_THUMB && !BL_WITH_COMPRESS
#error "BL_WITH_THUMB needs BL_WITH_COMPRESS"
#endif
/* Decoded bytes buffered before they are programmed: a multiple of every write_size. */
#ifndef BL_DEC_PAGE
#define BL_DEC_PAGE 512u
#endif

/* Status codes of §8.1 that only the decoders send. */
enum { BL_DELTA_BASE_MISMATCH = 0x0F, BL_DECODE_ERROR = 0x10, BL_BLOCK_LENGTH = 0x11,
       BL_PATCH_REJECTED = 0x12 };
/* HELLO capabilities and BEGIN flags (§8.2, §8.5). */
#define BL_CAP_COMPRESS 0x10u
#define BL_CAP_DELTA 0x20u
#define BL_CAP_THUMB 0x40u
#define BL_FLAG_COMPRESSED 0x01u
#define BL_FLAG_DELTA 0x02u
/* The BEGIN tail after the version: encoding, stream_size, stream_sha256, base_sha256. */
#define BL_BEGIN_TAIL 69u

/* LZMA, lc=0 lp=0 pb=0: 1775 probabilities (no pos-state tables beyond state 0). */
typedef struct {
    uint16_t is_match[12], is_rep[12], rep_g0[12], rep_g1[12], rep_g2[12], rep0_long[12];
    uint16_t slot[4][64], spec[115], align[16];
    uint16_t len[2][2 + 8 + 8 + 256]; /* match, rep: choice, choice2, low, mid, high */
    uint16_t lit[0x300];
    uint32_t range, code, rep[4], dist;
    uint16_t sym, m, n, i, state, length, tmp, match_byte; /* saved when input runs out */
    uint8_t which;
} bl_lzma_t;

/* Inflate, tinf-style canonical Huffman tables (no window: matches read flash). */
typedef struct {
    uint16_t lcount[16], lsym[288], dcount[16], dsym[32];
    uint8_t lens[288 + 32];
    uint32_t bits, dist;
    uint16_t nbits, hlit, hdist, hclen, i, n, sym, len, cur, sum, copy;
    uint8_t final, type, depth;
} bl_inflate_t;

typedef struct {
    uint8_t on, delta, base_slot, resumed;
    uint8_t hdr[20], hlen, in_block, ended, codec, dsrc;
    uint32_t out_off, out_len, enc_len, dlen, dstart; /* the current block (§17.1) */
    uint32_t consumed, produced, next_out, out_ckpt;
    uint32_t image_size, base_size;
    const uint8_t *in; /* encoded input the codec may take */
    uint32_t in_n;
    int pc; /* where the codec coroutine resumes */
    uint16_t fill; /* decoded bytes in page */
    uint16_t cap; /* page bytes before a flush: BL_DEC_PAGE, + 2 in LZMA_THUMB blocks */
    uint8_t pre; /* LZMA_THUMB: page bytes at its start already unfiltered (0 or 2) */
    uint8_t page[BL_DEC_PAGE + 2];
    union {
        bl_lzma_t lz;
        bl_inflate_t zl;
    } u;
} bl_dec_t;

#endif
