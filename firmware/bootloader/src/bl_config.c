/* Which configurations this build can serve: every geometry rule of BL_GEOMETRY_OK, named
 * one by one, plus the compile-time buffer sizes. bl_init refuses anything else, so no
 * flash geometry or window can index past a buffer. */
#include "bl.h"

const char *bl_config_error(const bl_config_t *c) {
    uint32_t records;
    if (!c) return "no configuration";
    if (!c->name || !c->compat || !c->bootloader_version)
        return "name, compat and bootloader_version are required";
    if (!BL_POW2(c->write_size)) return "write_size must be a power of two";
    if (c->write_size > BL_RECORD_SIZE) return "write_size must divide a 128-byte trailer record";
    if (c->write_size > BL_WRITE_MAX) return "write_size is above BL_WRITE_MAX of this build";
    if (c->write_size < BL_WRITE_MIN) return "write_size is below BL_WRITE_MIN of this build";
    if (c->sector_size == 0 || c->sector_size % c->write_size)
        return "sector_size must be a non-zero multiple of write_size";
    if (c->slot_size == 0 || c->slot_size % c->sector_size)
        return "slot_size must be a non-zero multiple of sector_size";
    if (c->trailer_size % c->sector_size) return "trailer_size must be a multiple of sector_size";
    if (c->max_trial_boots < 1 || c->max_trial_boots > 250)
        return "max_trial_boots must be 1..250";
    records = c->trailer_size / BL_RECORD_SIZE;
    if (records < c->max_trial_boots + 7u)
        return "trailer_size must hold max_trial_boots + 7 records (§10.1)";
    if (records > 65535u) return "trailer_size holds more than 65535 records";
    if (c->slot_size > 0x7FFFFFFFu - c->trailer_size) return "two slot regions exceed 4 GiB";
    if (c->max_data == 0 || c->max_data % c->write_size)
        return "max_data must be a non-zero multiple of write_size";
    if (c->max_data > BL_MAX_DATA_WIRE) return "max_data is above 8178 (§14)";
    if (c->max_data > BL_MAX_DATA_MAX) return "max_data is above BL_MAX_DATA_MAX of this build";
    if (c->window < c->max_data || c->window % c->write_size)
        return "window must be at least max_data and a multiple of write_size";
    if (c->window > BL_WINDOW_MAX) return "window is above BL_WINDOW_MAX of this build";
    if (c->watchdog_ms && c->watchdog_ms < 100u)
        return "watchdog_ms must be 0 (none) or at least 100 (a sector erase and a hash chunk)";
    /* The same rules as one constant expression: keep the two in step. */
    if (!BL_GEOMETRY_OK(c->slot_size, c->trailer_size, c->sector_size, c->write_size,
                        c->max_trial_boots, c->max_data, c->window))
        return "geometry refused";
    return 0;
}
