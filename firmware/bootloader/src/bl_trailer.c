/* Slot trailer (§10.1): an append-only log of 128-byte CRC-checked records, folded on demand,
 * and the image hash check. Needs only the flash half of the HAL. */
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_internal.h"

uint32_t bl_crc32(uint32_t crc, const uint8_t *p, size_t n) {
    /* Bitwise CRC-32 (§4): small code; start with 0xFFFFFFFF, finish with ^ 0xFFFFFFFF. */
    while (n--) {
        unsigned k;
        crc ^= *p++;
        for (k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc;
}

uint32_t bl_image_base(const bl_store_t *bl, unsigned slot) {
    return slot * (bl->cfg->slot_size + bl->cfg->trailer_size);
}

static uint32_t trailer_base(const bl_store_t *bl, unsigned slot) {
    return bl_image_base(bl, slot) + bl->cfg->slot_size;
}

unsigned bl_trailer_capacity(const bl_store_t *bl) {
    return bl->cfg->trailer_size / BL_RECORD_SIZE;
}

static int record_valid(const uint8_t *r) {
    if (bl_get32(r + 124) != (bl_crc32(0xFFFFFFFFu, r, 124) ^ 0xFFFFFFFFu)) return 0; /* torn */
    if (bl_get16(r) != 0x5452u) return 0;
    return r[2] >= BL_REC_BEGIN && r[2] <= BL_REC_STREAM_;
}

void bl_slot_status(bl_store_t *bl, unsigned slot, bl_slot_t *st) {
    unsigned pos, cap = bl_trailer_capacity(bl);
    uint32_t base = trailer_base(bl, slot);
    uint8_t *r = bl->rec;
    memset(st, 0, sizeof *st);
    for (pos = 0; pos < cap; pos++) {
        unsigned i, blank = 1;
        if (hal_flash_read(base + pos * BL_RECORD_SIZE, r, BL_RECORD_SIZE) != 0) break;
        for (i = 0; i < BL_RECORD_SIZE && blank; i++) blank = r[i] == 0xFFu;
        if (blank) break;
        st->used++;
        if (!record_valid(r)) {
            /* A torn BOOT (or CONFIRMED) still means the image got to run: count it. */
            if (st->state == BL_TRIAL && st->boots < 255u) st->boots++;
            continue;
        }
        switch (r[2]) {
        case BL_REC_BEGIN:
            memset(st, 0, offsetof(bl_slot_t, used));
            st->state = BL_WRITING;
            st->size = bl_get32(r + 4);
            memcpy(st->sha256, r + 8, 32);
            memcpy(st->version, r + 40, BL_VERSION_MAX);
            st->version[BL_VERSION_MAX] = 0;
            break;
        case BL_REC_STREAM_: /* §17.3: the stream a WRITING slot's checkpoints count */
            if (st->state == BL_WRITING && !st->stream_size) {
                st->stream_size = bl_get32(r + 4);
                memcpy(st->stream_sha, r + 8, 32);
            }
            break;
        case BL_REC_CHECKPOINT:
            if (st->state == BL_WRITING) st->checkpoint = bl_get32(r + 4);
            break;
        case BL_REC_COMPLETE:
            if (st->state == BL_WRITING) {
                st->state = BL_COMPLETE;
                st->checkpoint = st->size;
            }
            break;
        case BL_REC_TRIAL:
            if (st->state == BL_COMPLETE) {
                st->state = BL_TRIAL;
                st->generation = bl_get32(r + 4);
            }
            break;
        case BL_REC_BOOT:
            if (st->state == BL_TRIAL && st->boots < 255u) st->boots++;
            break;
        case BL_REC_CONFIRMED:
            if (st->state == BL_TRIAL) st->state = BL_CONFIRMED;
            break;
        default: /* INVALID */
            if (st->state != BL_EMPTY) st->state = BL_INVALID;
            break;
        }
    }
    st->free = (uint16_t)(cap - st->used);
    /* A trial that can no longer record CONFIRMED is a failed trial. */
    if (st->state == BL_TRIAL && st->free == 0) st->state = BL_INVALID;
}

int bl_trailer_append(bl_store_t *bl, unsigned slot, uint8_t kind, uint32_t arg, const uint8_t *sha,
                      const char *version) {
    bl_slot_t st;
    uint8_t *r = bl->rec;
    bl_slot_status(bl, slot, &st);
    if (st.used >= bl_trailer_capacity(bl)) return -1;
    memset(r, 0, BL_RECORD_SIZE);
    bl_put16(r, 0x5452u);
    r[2] = kind;
    bl_put32(r + 4, arg);
    if (sha) memcpy(r + 8, sha, 32);
    if (version) {
        size_t n = strlen(version);
        memcpy(r + 40, version, n > BL_VERSION_MAX ? BL_VERSION_MAX : n);
    }
    bl_put32(r + 124, bl_crc32(0xFFFFFFFFu, r, 124) ^ 0xFFFFFFFFu);
    return hal_flash_program(trailer_base(bl, slot) + st.used * BL_RECORD_SIZE, r, BL_RECORD_SIZE);
}

int bl_trailer_erase(bl_store_t *bl, unsigned slot) {
    uint32_t a, base = trailer_base(bl, slot);
    for (a = 0; a < bl->cfg->trailer_size; a += bl->cfg->sector_size) {
        hal_watchdog_feed();
        if (hal_flash_erase(base + a) != 0) return -1;
    }
    return 0;
}

int bl_image_ok(bl_store_t *bl, unsigned slot, const bl_slot_t *st, uint8_t digest[32]) {
    bl_sha256_t h;
    uint8_t tmp[64];
    uint32_t off, base = bl_image_base(bl, slot);
    uint8_t local[32];
    if (!digest) digest = local;
    if (st->size == 0 || st->size > bl->cfg->slot_size) return 0;
    bl_sha256_init(&h);
    for (off = 0; off < st->size; off += sizeof tmp) {
        uint32_t n = st->size - off < sizeof tmp ? st->size - off : (uint32_t)sizeof tmp;
        if (off % 4096u == 0) hal_watchdog_feed(); /* 2 MiB hash in ~100 ms on vmcu-h7 */
        if (hal_flash_read(base + off, tmp, n) != 0) return 0;
        bl_sha256_update(&h, tmp, n);
    }
    bl_sha256_final(&h, digest);
    return memcmp(digest, st->sha256, 32) == 0;
}
