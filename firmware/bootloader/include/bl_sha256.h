/* Compact SHA-256 (FIPS 180-4) for VERIFY and the boot-time image check. */
#ifndef BL_SHA256_H
#define BL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    uint8_t n;
} bl_sha256_t;

void bl_sha256_init(bl_sha256_t *c);
void bl_sha256_update(bl_sha256_t *c, const uint8_t *p, size_t n);
void bl_sha256_final(bl_sha256_t *c, uint8_t out[32]);

#endif
