/* Slots, their trailers and the boot decision (docs/protocol.md §10), without the serial
 * protocol: what a bootloader needs to pick and check an image at reset, and what an
 * application needs to confirm itself. Linking src/bl_boot.c, src/bl_trailer.c and
 * src/bl_sha256.c (with the flash half of bl_hal.h) is enough; the frames, commands and
 * receive window (bl.h) build on top of this, as MCUboot's serial recovery builds on
 * bootutil. */
#ifndef BL_BOOT_H
#define BL_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "bl_sha256.h"

#define BL_VERSION_MAX 80u
#define BL_RECORD_SIZE 128u

/* Status codes (§8.1), shared with the protocol layer. */
enum { BL_OK = 0, BL_UNSUPPORTED, BL_MALFORMED, BL_BAD_STATE, BL_OUT_OF_RANGE, BL_TOO_LARGE,
       BL_VERIFY_FAILED, BL_FLASH_ERROR, BL_BUSY, BL_NOT_IN_BOOTLOADER, BL_REFUSED,
       BL_MISALIGNED, BL_BAD_BAUD, BL_NO_IMAGE, BL_GAP };
/* Slot states (§8.3). */
enum { BL_EMPTY = 0, BL_WRITING, BL_COMPLETE, BL_TRIAL, BL_CONFIRMED, BL_INVALID };
enum { BL_MODE_BOOTLOADER = 0, BL_MODE_APP = 1 };
/* Trailer record kinds (§10.1). */
enum { BL_REC_BEGIN = 1, BL_REC_CHECKPOINT, BL_REC_COMPLETE, BL_REC_TRIAL, BL_REC_BOOT,
       BL_REC_CONFIRMED, BL_REC_INVALID, BL_REC_STREAM_ };

typedef struct {
    /* Sent in INFO, at most 24, 48 and 16 bytes (longer ones are cut). */
    const char *name, *compat, *bootloader_version;
    uint32_t slot_size, trailer_size, sector_size;
    uint16_t write_size, page_size;
    uint32_t erase_us, program_us, hash_us_per_kib;
    uint16_t boot_ms;
    uint8_t max_trial_boots;
    uint16_t max_data;
    uint32_t window;
    uint8_t protocol_version;
    /* The watchdog armed before a trial boot (ms); 0: the part has none, and a trial
     * image that hangs is rolled back only by a power cycle. */
    uint16_t watchdog_ms;
} bl_config_t;

/* Folded state of one slot trailer (§10.1). */
typedef struct {
    uint8_t state, boots;
    uint32_t size, checkpoint, generation;
    uint8_t sha256[32];
    char version[BL_VERSION_MAX + 1];
    uint32_t stream_size; /* an encoded transfer's STREAM record (§17.3); 0: raw */
    uint8_t stream_sha[32];
    uint16_t used, free;
} bl_slot_t;

/* The flash side: the geometry and one record buffer (about 140 bytes of RAM). */
typedef struct bl_store {
    const bl_config_t *cfg;
    uint8_t rec[BL_RECORD_SIZE];
} bl_store_t;

/* The verdict of the boot decision. */
typedef struct {
    uint8_t mode;  /* BL_MODE_APP: start `slot`; BL_MODE_BOOTLOADER: nothing bootable */
    uint8_t slot;  /* 0xFF when none */
    uint8_t trial; /* the slot boots on trial: it must confirm itself (bl_boot_confirm) */
} bl_boot_t;

/* The boot decision (§10.3): total, it cannot fail. Appends BOOT to a trial slot it
 * starts, INVALID to a trial that is over; never boots a slot whose bytes do not hash to
 * its trailer's SHA-256. Run it with cfg accepted by bl_config_error (bl.h). */
void bl_boot_decide(bl_store_t *st, bl_boot_t *out);
/* The running image confirms itself: CONFIRMED on its TRIAL slot. BL_OK (also if it was
 * confirmed already), BL_NO_IMAGE (the slot is not on trial) or BL_FLASH_ERROR. */
int bl_boot_confirm(bl_store_t *st, unsigned slot);
/* The newest CONFIRMED slot (whose image hashes right, if check_image), else -1: the
 * fallback a new image must never overwrite (§10.4). */
int bl_boot_fallback(bl_store_t *st, int check_image);

/* Fold one slot's trailer. */
void bl_slot_status(bl_store_t *st, unsigned slot, bl_slot_t *out);
/* The first slot in state a or b, else -1. */
int bl_slot_find(bl_store_t *st, uint8_t a, uint8_t b);
/* Append one trailer record; 0 on success (used by factory provisioning too). */
int bl_trailer_append(bl_store_t *st, unsigned slot, uint8_t kind, uint32_t arg,
                      const uint8_t *sha, const char *version);
/* Flash address of slot's first image byte (slot i at i x (slot_size + trailer_size)). */
uint32_t bl_image_base(const bl_store_t *st, unsigned slot);
/* The slot's first s->size bytes hash to s->sha256 (digest receives the hash if given). */
int bl_image_ok(bl_store_t *st, unsigned slot, const bl_slot_t *s, uint8_t digest[32]);
uint32_t bl_crc32(uint32_t crc, const uint8_t *p, size_t n);

#endif
