/* Helpers shared by the core's translation units (not part of the port API). */
#ifndef BL_INTERNAL_H
#define BL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "bl.h"
#include "bl_hal.h"

static inline uint16_t bl_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t bl_get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void bl_put16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void bl_put32(uint8_t *p, uint32_t v) {
    bl_put16(p, v);
    bl_put16(p + 2, v >> 16);
}

/* ---- slots (bl_trailer.c, bl_boot.c) */
unsigned bl_trailer_capacity(const bl_store_t *st);
int bl_trailer_erase(bl_store_t *st, unsigned slot);
/* Positions a trial needs behind its TRIAL record: every BOOT, the verdict, slack (§10.1). */
static inline unsigned bl_tail_reserve(const bl_config_t *c) { return 3u + c->max_trial_boots; }
/* Rewrite a staged (never bootable) slot's trailer to its minimal form when fewer than
 * `needed` positions are free (§10.1 reclaim); 0 on success. */
int bl_slot_make_room(bl_store_t *st, unsigned slot, const bl_slot_t *s, unsigned needed);
/* Mark a staged slot INVALID, or erase its trailer when no position is left. */
int bl_slot_drop(bl_store_t *st, unsigned slot);

/* ---- frames (bl_frame.c): the payload is already in bl->tx + 6 */
enum { OP_HELLO = 1, OP_INFO, OP_BEGIN, OP_DATA, OP_VERIFY, OP_ACTIVATE, OP_RESET, OP_CONFIRM,
       OP_ABORT, OP_SET_BAUD };
void bl_reply(bl_t *bl, uint8_t op, uint16_t seq, size_t len);
void bl_reply_status(bl_t *bl, uint8_t op, uint16_t seq, uint8_t status);
void bl_data_ack(bl_t *bl, uint16_t seq, uint8_t status, uint32_t next);
static inline void bl_phase(bl_t *bl, uint32_t ph) { (void)hal_hook(bl, BL_EV_PHASE, ph, 0); }

/* ---- commands (bl_cmd.c): one decoded, CRC-checked request */
void bl_dispatch(bl_t *bl, uint8_t op, uint16_t seq, const uint8_t *p, size_t n);

/* ---- DATA and the receive window (bl_window.c) */
void bl_on_data(bl_t *bl, uint16_t seq, const uint8_t *p, size_t n);
/* A new session starts: nothing held. */
void bl_window_reset(bl_t *bl);

/* ---- where the transfer's bytes go (bl_sink.c) */
/* THE seam for stream decoders (§17): the next n bytes of the transfer, in order, at
 * transfer offset bl->s.expected. A raw transfer writes them to the slot as they are; a
 * decoder would decode here and pass its output to bl_image_write. Advances
 * bl->s.expected and appends CHECKPOINTs. 0 or a status. */
int bl_sink_write(bl_t *bl, const uint8_t *p, uint32_t n);
/* Every byte written to a slot image goes through here: erase each sector on first touch
 * in this session, program on the write grid, pad a short end with 0xFF. 0 or a status. */
int bl_image_write(bl_t *bl, uint32_t image_off, const uint8_t *p, uint32_t n);

/* ---- encoded transfers (bl_dec.c, §17), with BL_WITH_COMPRESS */
/* The next n stream bytes: decode them into the slot; on a bad stream the slot is dropped,
 * the session closed, and the §17.2 status returned. */
int bl_dec_write(bl_t *bl, const uint8_t *p, uint32_t n);
/* BEGIN with flags != 0: UNSUPPORTED, MALFORMED (no tail, bad encoding) or OK. */
int bl_dec_begin_flags(const bl_t *bl, const uint8_t *p, size_t n, uint32_t flags);
/* DELTA: the fallback's image is the base the request names (1), or not (0). */
int bl_dec_base_ok(bl_t *bl, const uint8_t *p, uint32_t flags);
/* The slot's STREAM record matches the request's stream (none for a raw transfer). */
int bl_dec_same_stream(const bl_slot_t *st, const uint8_t *p, uint32_t flags);
/* Append the STREAM record of a fresh encoded BEGIN; 0 on success. */
int bl_dec_stream_record(bl_t *bl, unsigned slot, const uint8_t *p, uint32_t flags);
/* Open the decoder for the session just begun; returns the resume offset to answer. */
uint32_t bl_dec_open(bl_t *bl, const uint8_t *p, uint32_t flags, uint32_t image_size,
                     uint32_t resume, int complete);

#endif
