/* Helpers shared by the core's translation units (not part of the port API). */
#ifndef BL_INTERNAL_H
#define BL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "bl.h"

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

uint32_t bl_image_base(const bl_t *bl, unsigned slot);
unsigned bl_trailer_capacity(const bl_t *bl);
int bl_trailer_erase(bl_t *bl, unsigned slot);
/* The slot's first st->size bytes hash to st->sha256 (digest receives the hash if given). */
int bl_image_ok(bl_t *bl, unsigned slot, const bl_slot_t *st, uint8_t digest[32]);

#endif
