/* The block stream of encoded transfers (§17.1, §17.2): block headers checked before a
 * block decodes, decoded bytes programmed a page at a time through bl_image_write,
 * checkpoints at block ends (§17.3). Every back-reference is read from flash. */
#include <string.h>

#include "bl.h"
#include "bl_dec.h"
#include "bl_dec_internal.h"
#include "bl_internal.h"

#if BL_WITH_COMPRESS

#define BLOCK_GRID 4096u
#define MAX_BLOCK 65536u
#define WINDOW 32768u

#if BL_WITH_THUMB
/* LZMA_THUMB (§17.1): LZMA's output is the block after xz's ARM-Thumb branch filter,
 * which made the 22-bit offset of every BL pair (bytes i+1 and i+3 with high bits F0
 * and F8, i even from the block's start, i + 4 <= out_len) absolute by adding its image
 * offset + 4. A pair at i and one at i + 2 exclude each other (byte i+3 would need both),
 * so whether bytes are a filtered pair depends only on their own 4 bytes, the same in
 * either form. The page buffer holds filtered bytes; a flush un-filters them, so the
 * slot holds the image, and back-references read from the slot filter them again. */
static void thumb_conv(uint8_t *b, uint32_t pos, int enc) {
    uint32_t v = ((uint32_t)(b[1] & 7u) << 19 | (uint32_t)b[0] << 11 |
                  (uint32_t)(b[3] & 7u) << 8 | b[2]) << 1;
    v = (enc ? v + pos + 4u : v - (pos + 4u)) >> 1;
    b[0] = (uint8_t)(v >> 11);
    b[1] = (uint8_t)(0xF0u | (v >> 19 & 7u));
    b[2] = (uint8_t)v;
    b[3] = (uint8_t)(0xF8u | (v >> 8 & 7u));
}

static int thumb_pair(const uint8_t *b) { return (b[1] & 0xF8u) == 0xF0u && (b[3] & 0xF8u) == 0xF8u; }

/* The 4 bytes at block offset s as the slot and the page hold them (s + 4 <= produced). */
static int thumb_get4(bl_t *bl, bl_dec_t *d, uint32_t s, uint8_t *b) {
    uint32_t pp = d->produced - d->fill, k = 0;
    if (s < pp) {
        k = pp - s < 4u ? pp - s : 4u;
        if (hal_flash_read(bl_image_base(&bl->store, bl->s.slot) + d->out_off + s, b, k) != 0)
            return BL_FLASH_ERROR;
    }
    for (; k < 4u; k++) b[k] = d->page[s + k - pp];
    return BL_OK;
}

/* Bytes [src, src + n) of the block, copied to `to` as the slot and page hold them:
 * filter again the pairs a flush un-filtered (those starting below the page). A pair
 * inside the run is tested in place; one across its edges is read whole. */
static int thumb_refilter(bl_t *bl, bl_dec_t *d, uint8_t *to, uint32_t src, uint32_t n) {
    uint32_t pp = d->produced - d->fill, s = src & ~1u, end = src + n, k;
    uint8_t b[4], *p;
    for (s = s >= 2 ? s - 2 : s; s < end && s < pp; s += 2) {
        if (s >= src && s + 4u <= end) {
            p = to + (s - src);
        } else { /* bytes s+1 and s+3 in the run rule most pairs out without a read */
            int st;
            if ((s + 1u >= src && s + 1u < end && (to[s + 1u - src] & 0xF8u) != 0xF0u) ||
                (s + 3u < end && (to[s + 3u - src] & 0xF8u) != 0xF8u))
                continue;
            if ((st = thumb_get4(bl, d, s, b)) != BL_OK) return st;
            p = b;
        }
        if (!thumb_pair(p)) continue;
        thumb_conv(p, d->out_off + s, 1);
        if (p == b)
            for (k = 0; k < 4u; k++)
                if (s + k >= src && s + k < end) to[s + k - src] = b[k];
        s += 2;
    }
    return BL_OK;
}
#endif

int bl_dec_flush(bl_t *bl, bl_dec_t *d) {
    uint32_t n = d->fill, pp = d->produced - d->fill;
    int st;
    if (!n) return BL_OK;
#if BL_WITH_THUMB
    if (d->codec == 3) { /* un-filter the pairs starting in the page (one may end past it) */
        uint32_t i, lim = d->produced == d->out_len ? n : BL_DEC_PAGE;
        for (i = d->pre; i < lim && i + 4u <= n; i += 2)
            if (thumb_pair(d->page + i)) {
                thumb_conv(d->page + i, d->out_off + pp + i, 0);
                i += 2;
            }
        if (lim < n) { /* mid-block: program the page, keep the 2 bytes after it */
            st = bl_image_write(bl, d->out_off + pp, d->page, lim);
            d->pre = (uint8_t)(i - lim);
            memmove(d->page, d->page + lim, n - lim);
            d->fill = (uint16_t)(n - lim);
            return st;
        }
    }
#endif
    st = bl_image_write(bl, d->out_off + pp, d->page, n);
    d->fill = 0;
    return st;
}

int bl_dec_copy(bl_t *bl, bl_dec_t *d, uint32_t dist, uint32_t len) {
    if (dist == 0 || dist > d->produced + d->dlen) return BL_DECODE_ERROR;
    while (len) {
        uint32_t n = len < (uint32_t)(d->cap - d->fill) ? len : (uint32_t)(d->cap - d->fill);
        uint8_t *to = d->page + d->fill;
        if (d->produced >= d->out_len) return BL_BLOCK_LENGTH;
        if (n > d->out_len - d->produced) n = d->out_len - d->produced;
        if (dist <= d->fill) { /* in the page buffer: runs of at most dist never overlap */
            if (n > dist) n = dist;
            memcpy(to, to - dist, n);
        } else {
            uint32_t from;
            unsigned slot = bl->s.slot;
            if (dist <= d->produced) { /* programmed: read it back from the slot */
                if (n > dist - d->fill) n = dist - d->fill;
                from = d->out_off + d->produced - dist;
            } else { /* the block's preset dictionary, up to its end */
                uint32_t k = dist - d->produced;
                if (n > k) n = k;
                from = d->dstart + d->dlen - k;
                if (d->dsrc == 2) slot = d->base_slot;
            }
            if (hal_flash_read(bl_image_base(&bl->store, slot) + from, to, n) != 0)
                return BL_FLASH_ERROR;
        }
#if BL_WITH_THUMB
        if (d->codec == 3 && dist > (uint32_t)(d->fill - d->pre)) { /* from un-filtered bytes */
            int st = thumb_refilter(bl, d, to, d->produced - dist, n);
            if (st != BL_OK) return st;
        }
#endif
        d->fill = (uint16_t)(d->fill + n);
        d->produced += n;
        len -= n;
        if (d->fill == d->cap) {
            int st = bl_dec_flush(bl, d);
            if (st != BL_OK) return st;
        }
    }
    return BL_OK;
}

int bl_dec_back(bl_t *bl, bl_dec_t *d, uint32_t dist, uint8_t *b) {
    uint32_t from;
    unsigned slot;
    if (dist == 0) return BL_DECODE_ERROR;
    if (dist <= d->fill) {
        *b = d->page[d->fill - dist];
    } else {
        if (dist <= d->produced) { /* programmed already: read it back from the slot */
            slot = bl->s.slot;
            from = d->out_off + d->produced - dist;
        } else { /* before the block: its preset dictionary (DEFLATE only) */
            uint32_t k = dist - d->produced;
            if (k > d->dlen) return BL_DECODE_ERROR;
            slot = d->dsrc == 2 ? d->base_slot : bl->s.slot;
            from = d->dstart + d->dlen - k;
        }
        if (hal_flash_read(bl_image_base(&bl->store, slot) + from, b, 1)) return BL_FLASH_ERROR;
    }
#if BL_WITH_THUMB
    if (d->codec == 3 && dist > (uint32_t)(d->fill - d->pre))
        return thumb_refilter(bl, d, b, d->produced - dist, 1);
#endif
    return BL_OK;
}

/* A header, before its block decodes (§17.2): order, grid, size, codec, dictionary. */
static int header(bl_t *bl, bl_dec_t *d) {
    const uint8_t *h = d->hdr;
    uint32_t end;
    d->out_off = bl_get32(h);
    d->out_len = bl_get32(h + 4);
    d->enc_len = bl_get32(h + 8);
    d->codec = h[12];
    d->dsrc = h[13];
    d->dlen = d->dsrc ? (uint32_t)bl_get16(h + 14) + 1u : 0u;
    d->dstart = bl_get32(h + 16);
    end = d->out_off + d->out_len;
    if (d->resumed) { /* the first block after a resume starts on a sector (a checkpoint) */
        if (d->out_off % bl->cfg->sector_size) return BL_DECODE_ERROR;
        d->next_out = d->out_ckpt = bl->s.erased_to = d->out_off;
        d->resumed = 0;
    }
    if (d->out_off != d->next_out || d->out_len == 0 || d->out_len > MAX_BLOCK ||
        end > d->image_size || end < d->out_off || (end % BLOCK_GRID && end != d->image_size))
        return BL_DECODE_ERROR;
    if (d->enc_len > d->out_len + d->out_len / 8u + 64u) return BL_DECODE_ERROR;
    if (d->codec == 2 || (BL_WITH_THUMB && d->codec == 3)) {
        if (d->dsrc != 0) return BL_DECODE_ERROR;
    } else if (d->codec != 1) {
        return BL_DECODE_ERROR;
    }
    if (d->dlen > WINDOW) return BL_DECODE_ERROR;
    if (d->dsrc == 1) {
        if (d->dstart > d->out_off || d->dlen > d->out_off - d->dstart) return BL_DECODE_ERROR;
    } else if (d->dsrc == 2) {
        if (!d->delta || d->dstart > d->base_size || d->dlen > d->base_size - d->dstart)
            return BL_PATCH_REJECTED;
    } else if (d->dsrc != 0) {
        return BL_DECODE_ERROR;
    }
    d->consumed = d->produced = 0;
    d->ended = 0;
    d->fill = 0;
    d->pre = 0;
    d->cap = (uint16_t)(BL_DEC_PAGE + (d->codec == 3 ? 2u : 0u));
    d->pc = 0;
    memset(&d->u, 0, sizeof d->u);
    return BL_OK;
}

/* A block's last encoded byte arrived: it must have ended, at exactly out_len bytes. */
static int block_done(bl_t *bl, bl_dec_t *d, uint32_t stream_end) {
    bl_session_t *s = &bl->s;
    uint32_t b_end = d->out_off + d->out_len;
    int st;
    if (!d->ended) return d->produced < d->out_len ? BL_BLOCK_LENGTH : BL_DECODE_ERROR;
    if (d->produced != d->out_len) return BL_BLOCK_LENGTH;
    if ((st = bl_dec_flush(bl, d)) != BL_OK) return st;
    d->in_block = 0;
    d->next_out = b_end;
    /* A checkpoint is a stream offset at a block end on a sector boundary (§17.3). */
    if (b_end % bl->cfg->sector_size == 0 && b_end - d->out_ckpt >= s->interval &&
        stream_end < s->size) {
        bl_slot_t slot;
        bl_slot_status(&bl->store, s->slot, &slot);
        if (slot.free > bl_tail_reserve(bl->cfg) + 1 &&
            bl_trailer_append(&bl->store, s->slot, BL_REC_CHECKPOINT, stream_end, 0, 0) != 0)
            return BL_FLASH_ERROR;
        d->out_ckpt = b_end;
        s->checkpoint = stream_end;
    }
    return BL_OK;
}

static int feed(bl_t *bl, bl_dec_t *d, const uint8_t *p, uint32_t n) {
    uint32_t pos = bl->s.expected;
    while (n) {
        uint32_t take;
        int r;
        if (!d->in_block) {
            take = 20u - d->hlen < n ? 20u - d->hlen : n;
            memcpy(d->hdr + d->hlen, p, take);
            d->hlen = (uint8_t)(d->hlen + take);
            p += take;
            n -= take;
            pos += take;
            if (d->hlen == 20) {
                d->hlen = 0;
                if ((r = header(bl, d)) != BL_OK) return r;
                d->in_block = 1;
                if (d->enc_len == 0 && (r = block_done(bl, d, pos)) != BL_OK) return r;
            }
            continue;
        }
        if (d->ended) return BL_DECODE_ERROR; /* bytes after the codec's end mark */
        take = d->enc_len - d->consumed < n ? d->enc_len - d->consumed : n;
        d->in = p;
        d->in_n = take;
        r = d->codec != 1 ? bl_lzma_run(bl, d) : bl_inflate_run(bl, d);
        if (r == DEC_END) {
            d->ended = 1;
            if (d->in_n) return BL_DECODE_ERROR;
        } else if (r != DEC_MORE) {
            return r;
        }
        p += take;
        n -= take;
        pos += take;
        if (d->consumed == d->enc_len && (r = block_done(bl, d, pos)) != BL_OK) return r;
    }
    return BL_OK;
}

int bl_dec_write(bl_t *bl, const uint8_t *p, uint32_t n) {
    int st = feed(bl, &bl->dec, p, n);
    if (st != BL_OK) { /* §17.2: drop the slot being written and close the session */
        bl->dec.on = 0;
        bl->s.open = 0;
        if (bl_slot_drop(&bl->store, bl->s.slot) != 0) return BL_FLASH_ERROR;
        return st;
    }
    bl->s.expected += n;
    return BL_OK;
}

int bl_dec_begin_flags(const bl_t *bl, const uint8_t *p, size_t n, uint32_t flags) {
    size_t tail = 41u + (size_t)p[40];
    uint32_t caps = BL_FLAG_COMPRESSED | (BL_WITH_DELTA ? BL_FLAG_DELTA : 0u);
    (void)bl;
    if (flags & ~caps) return BL_UNSUPPORTED;
    if (n < tail + BL_BEGIN_TAIL || p[tail] != 1 || bl_get32(p + tail + 1) == 0)
        return BL_MALFORMED;
    return BL_OK;
}

int bl_dec_base_ok(bl_t *bl, const uint8_t *p, uint32_t flags) {
    const uint8_t *base_sha = p + 41u + p[40] + 37u;
    bl_slot_t st;
    int fb;
    if (!(flags & BL_FLAG_DELTA)) return 1;
    fb = bl_boot_fallback(&bl->store, 1);
    if (fb < 0) return 0;
    bl_slot_status(&bl->store, (unsigned)fb, &st);
    return memcmp(st.sha256, base_sha, 32) == 0;
}

int bl_dec_same_stream(const bl_slot_t *st, const uint8_t *p, uint32_t flags) {
    const uint8_t *t = p + 41u + p[40];
    if (!flags) return st->stream_size == 0;
    return st->stream_size == bl_get32(t + 1) && memcmp(st->stream_sha, t + 5, 32) == 0;
}

uint32_t bl_dec_open(bl_t *bl, const uint8_t *p, uint32_t flags, uint32_t image_size,
                     uint32_t resume, int complete) {
    const uint8_t *t = p + 41u + p[40];
    bl_dec_t *d = &bl->dec;
    uint32_t stream_size = bl_get32(t + 1);
    memset(d, 0, offsetof(bl_dec_t, page));
    if (!flags) return resume;
    d->on = 1;
    d->delta = (flags & BL_FLAG_DELTA) != 0;
    d->image_size = image_size;
    if (d->delta) {
        bl_slot_t st;
        int fb = bl_boot_fallback(&bl->store, 1);
        d->base_slot = (uint8_t)(fb < 0 ? 0 : fb);
        bl_slot_status(&bl->store, d->base_slot, &st);
        d->base_size = fb < 0 ? 0u : st.size;
    }
    if (complete) resume = stream_size; /* a verified slot: straight to VERIFY */
    d->resumed = resume != 0;
    bl->s.size = stream_size; /* DATA offsets and acknowledgements count stream bytes */
    return resume;
}

int bl_dec_stream_record(bl_t *bl, unsigned slot, const uint8_t *p, uint32_t flags) {
    const uint8_t *t = p + 41u + p[40];
    if (!flags) return 0;
    return bl_trailer_append(&bl->store, slot, BL_REC_STREAM_, bl_get32(t + 1), t + 5, 0);
}

#endif
