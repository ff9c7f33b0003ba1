/* Shared by the stream layer (bl_dec.c) and the codecs (bl_dec_lzma.c, bl_dec_inflate.c). */
#ifndef BL_DEC_INTERNAL_H
#define BL_DEC_INTERNAL_H

#include "bl.h"
#include "bl_dec.h"

/* A codec step: DEC_MORE when every input byte given is used, DEC_END at its end mark,
 * otherwise a status (BL_DECODE_ERROR, BL_BLOCK_LENGTH, BL_PATCH_REJECTED, BL_FLASH_ERROR). */
enum { DEC_MORE = 0, DEC_END = 0x100 };
int bl_lzma_run(bl_t *bl, bl_dec_t *d);
int bl_inflate_run(bl_t *bl, bl_dec_t *d);
/* Program the page buffer's bytes; 0 or a status. */
int bl_dec_flush(bl_t *bl, bl_dec_t *d);
/* Append one decoded byte (programs a full page); 0 or a status. */
static inline int bl_dec_put(bl_t *bl, bl_dec_t *d, uint8_t b) {
    if (d->produced >= d->out_len) return BL_BLOCK_LENGTH;
    d->page[d->fill++] = b;
    d->produced++;
    return d->fill == d->cap ? bl_dec_flush(bl, d) : 0;
}
/* A match: len bytes from dist (>= 1) back, in runs (page buffer, slot or dictionary
 * read a run at a time); DECODE_ERROR for a distance beyond the output and dictionary,
 * BLOCK_LENGTH past out_len. 0 or a status. */
int bl_dec_copy(bl_t *bl, bl_dec_t *d, uint32_t dist, uint32_t len);
/* The byte `dist` (>= 1) back from the next output byte: page buffer, the slot being
 * written, or the block's dictionary (OUTPUT or BASE). 0 or a status. */
int bl_dec_back(bl_t *bl, bl_dec_t *d, uint32_t dist, uint8_t *b);

/* Coroutine helpers: a codec keeps every variable that lives across input bytes in its
 * state struct and resumes at the line where it ran out of input (one use per line). */
#define DEC_BEGIN(d) switch ((d)->pc) { case 0:
#define DEC_END_CO() } return BL_DECODE_ERROR
#define DEC_NEED(d)                                                                      \
    do {                                                                                 \
        while (!(d)->in_n) {                                                             \
            (d)->pc = __LINE__;                                                          \
            return DEC_MORE;                                                             \
        case __LINE__:;                                                                  \
        }                                                                                \
    } while (0)
#define DEC_TAKE(d) ((d)->consumed++, (d)->in_n--, *(d)->in++)

#endif
