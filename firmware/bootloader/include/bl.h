/* Reference MCU side of the serial bootloader protocol (docs/protocol.md), C99, no heap. */
#ifndef BL_H
#define BL_H

#include <stddef.h>
#include <stdint.h>

#include "bl_boot.h"
#include "bl_dec.h"
#include "bl_sha256.h"

/* Compile-time RAM sizing: the largest max_data and window any configuration uses. */
#ifndef BL_MAX_DATA_MAX
#define BL_MAX_DATA_MAX 2048u
#endif
#ifndef BL_WINDOW_MAX
#define BL_WINDOW_MAX 16384u
#endif
#ifndef BL_WRITE_MAX
#define BL_WRITE_MAX 32u
#endif
/* The smallest write_size any configuration uses: it sizes the bitmap of held write units
 * (one bit per unit of the window), so a build for 8-byte writes needs no per-byte map. */
#ifndef BL_WRITE_MIN
#define BL_WRITE_MIN 1u
#endif

/* A compile-time check that also works in C99 (where _Static_assert is missing). */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define BL_STATIC_ASSERT(cond, name) _Static_assert(cond, #name)
#else
#define BL_STATIC_ASSERT(cond, name) typedef char bl_static_assert_##name[(cond) ? 1 : -1]
#endif

/* Largest request body: DATA header + max_data, or BEGIN with an 80-byte version. */
#define BL_BODY_MAX ((BL_MAX_DATA_MAX + 4u > 125u ? BL_MAX_DATA_MAX + 4u : 125u) + 10u)
/* COBS worst case of that body; longer segments are dropped unbuffered (§3.1). */
#define BL_RX_MAX (BL_BODY_MAX + BL_BODY_MAX / 254u + 1u)
/* The largest answer is INFO: 3 + 33 + 25 + 49 + 17 + 27 + 1 + 2 x 120 = 395 payload bytes. */
#define BL_TX_MAX 408u
/* Largest max_data the wire allows: a DATA body's length field is a u16 (§14). */
#define BL_MAX_DATA_WIRE 8178u

/* A geometry the core can serve whatever its buffers (a constant expression, so a port
 * can _Static_assert it on its own tables): power-of-two writes that tile a 128-byte
 * trailer record, sectors, slots and trailers in whole units, a trailer with room for a
 * whole trial (§10.1), frames on the write grid and a window of whole frames' units.
 * bl_config_error() checks the same at run time, plus the buffers of this build. */
#define BL_POW2(x) ((x) != 0u && ((x) & ((x)-1u)) == 0u)
#define BL_GEOMETRY_OK(slot, trailer, sector, write, trials, max_data, window)                  \
    (BL_POW2(write) && (write) <= BL_RECORD_SIZE && (sector) % (write) == 0u &&                \
     (sector) > 0u && (slot) > 0u && (slot) % (sector) == 0u && (trailer) % (sector) == 0u &&   \
     (trailer) / BL_RECORD_SIZE >= (trials) + 7u && (trailer) / BL_RECORD_SIZE <= 65535u &&    \
     (trials) >= 1u && (trials) <= 250u && (max_data) > 0u && (max_data) % (write) == 0u &&     \
     (max_data) <= BL_MAX_DATA_WIRE && (window) >= (max_data) && (window) % (write) == 0u &&  \
     (slot) <= 0x7FFFFFFFu - (trailer))

/* hal_hook events. */
enum { BL_EV_PHASE = 1,   /* a = phase (BL_PH_*) */
       BL_EV_PROGRAM,     /* a = image offset, b = end; before the bytes are programmed */
       BL_EV_SIZE,        /* a = image size of the open session */
       BL_EV_REQUEST,     /* a = opcode; return 1 = drop, 2 = REFUSED */
       BL_EV_BAD_FRAME };
enum { BL_PH_BEGIN = 1, BL_PH_DATA, BL_PH_VERIFY, BL_PH_ACTIVATE, BL_PH_BOOT, BL_PH_CONFIRM,
       BL_PH_ABORT };

typedef struct {
    uint8_t open, slot;
    uint32_t size, expected, checkpoint, interval, erased_to;
    /* DATA's write grid starts here: 0, or an encoded transfer's resume offset (a block
     * end, §17.3, anywhere in the stream): its frames are aligned from there on. */
    uint32_t grid;
} bl_session_t;

typedef struct bl {
    const bl_config_t *cfg; /* NULL: refused by bl_init */
    bl_store_t store;       /* the slots, for bl_boot.h (store.cfg == cfg) */
    uint8_t mode;
    uint8_t running_slot; /* 0xFF: none */
    uint8_t booted_trial; /* the running slot was booted on trial */
    bl_session_t s;
    /* Receive: one COBS segment, decoded in place. */
    uint8_t rx[BL_RX_MAX];
    uint16_t rx_len;
    uint8_t rx_over;
    /* Window: bytes ahead of `expected`, at offset % window, plus a bitmap of held write units. */
    uint8_t win[BL_WINDOW_MAX];
    uint8_t held[(BL_WINDOW_MAX / BL_WRITE_MIN + 7u) / 8u];
    uint8_t tx[BL_TX_MAX];
    /* Reset and baud requests for the port's main loop. */
    uint8_t reset_req; /* 0 none, 1 RUN, 2 STAY */
    uint32_t baud, old_baud, baud_since;
    uint8_t baud_probation;
    uint32_t frames_ok, frames_bad;
#if BL_WITH_COMPRESS
    bl_dec_t dec; /* the stream decoder of an encoded transfer (§17) */
#endif
} bl_t;

/* NULL if this build can serve cfg, else why not (one line naming the field). */
const char *bl_config_error(const bl_config_t *cfg);
static inline int bl_config_ok(const bl_config_t *cfg) { return bl_config_error(cfg) == 0; }
/* Power-on: refuse a configuration the buffers cannot hold (returns -1, bl stays inert:
 * bl_feed ignores input), else run the boot decision (§10.3) unless stay and return 0;
 * afterwards mode is APP or BOOTLOADER. */
int bl_init(bl_t *bl, const bl_config_t *cfg, int stay, uint32_t baud);
/* In an application that links the core: serve HELLO, INFO, RESET and CONFIRM in APP mode
 * as the image started from `slot` (the bootloader's hand-off); no boot decision. */
int bl_init_app(bl_t *bl, const bl_config_t *cfg, unsigned slot, uint32_t baud);
/* Feed received bytes (from the HAL's receive ring). */
void bl_feed(bl_t *bl, const uint8_t *p, size_t n);
/* Timers (SET_BAUD fallback); call with hal_millis() from the main loop. */
void bl_tick(bl_t *bl, uint32_t now_ms);
/* The application (or the port's virtual app) confirms its trial image; 0 on OK. */
int bl_app_confirm(bl_t *bl);
/* Frame layer (§3): COBS-decode a segment in place (0 on a framing error); check a body's
 * version, length and CRC; COBS-encode a body to the UART with its delimiter. */
size_t bl_cobs_decode(uint8_t *buf, size_t n);
int bl_body_ok(const uint8_t *body, size_t n);
void bl_send_body(const uint8_t *body, size_t n);

#endif
