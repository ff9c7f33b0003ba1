/* The three reference models of docs/protocol.md §15 (the Python simulator's models.py). */
#ifndef BL_MODELS_H
#define BL_MODELS_H

#include "bl.h"

/* One row per model: X(id, name, compat, bootloader_version, slot_size, trailer_size,
 * sector_size, write_size, page_size, erase_us, program_us, hash_us_per_kib, boot_ms,
 * max_trial_boots, max_data, window, protocol_version, watchdog_ms). */
#define BL_MODEL_ROWS(X)                                                                        \
    X(f4, "vmcu-f4", "contoso:vmcu-f4:rev2", "1.0.0", 1088u * 1024u, 4096u, 4096u, 8u, 256u,   \
      25000u, 1000u, 100u, 50u, 3u, 1024u, 8192u, 1u, 1000u)                                           \
    X(l0, "vmcu-l0", "contoso:vmcu-l0:", "1.0.0", 256u * 1024u, 4096u, 2048u, 4u, 128u,        \
      20000u, 600u, 400u, 30u, 2u, 256u, 1024u, 1u, 1000u)                                             \
    X(h7, "vmcu-h7", "fabrikam:vmcu-h7:b", "1.0.0", 2048u * 1024u, 8192u, 8192u, 32u, 512u,    \
      45000u, 1500u, 50u, 80u, 3u, 2048u, 16384u, 1u, 1000u)

/* Every row is a geometry the core serves (the buffers are checked by bl_init). */
#define BL_MODEL_ASSERT(id, name, compat, blv, slot, trailer, sector, write, page, erase, prog, \
                        hash, boot, trials, max_data, window, proto, wdog)                     \
    BL_STATIC_ASSERT(BL_GEOMETRY_OK(slot, trailer, sector, write, trials, max_data, window),    \
                     model_##id##_geometry);
BL_MODEL_ROWS(BL_MODEL_ASSERT)

#define BL_MODEL_ENTRY(id, name, compat, blv, slot, trailer, sector, write, page, erase, prog,  \
                       hash, boot, trials, max_data, window, proto, wdog)                      \
    {name, compat, blv, slot, trailer, sector, write, page, erase, prog, hash, boot, trials,     \
     max_data, window, proto, wdog},
static const bl_config_t BL_MODELS[] = {BL_MODEL_ROWS(BL_MODEL_ENTRY)};
#define BL_MODEL_COUNT (sizeof BL_MODELS / sizeof BL_MODELS[0])

#endif
