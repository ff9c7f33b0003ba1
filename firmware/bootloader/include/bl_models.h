/* The three reference models of docs/protocol.md §15 (the Python simulator's models.py). */
#ifndef BL_MODELS_H
#define BL_MODELS_H

#include "bl.h"

static const bl_config_t BL_MODELS[] = {
    {"vmcu-f4", "contoso:vmcu-f4:rev2", "1.0.0", 1088u * 1024u, 4096u, 4096u, 8u, 256u, 25000u,
     1000u, 100u, 50u, 3u, 1024u, 8192u, 1u},
    {"vmcu-l0", "contoso:vmcu-l0:", "1.0.0", 256u * 1024u, 4096u, 2048u, 4u, 128u, 20000u, 600u,
     400u, 30u, 2u, 256u, 1024u, 1u},
    {"vmcu-h7", "fabrikam:vmcu-h7:b", "1.0.0", 2048u * 1024u, 8192u, 8192u, 32u, 512u, 45000u,
     1500u, 50u, 80u, 3u, 2048u, 16384u, 1u},
};
#define BL_MODEL_COUNT (sizeof BL_MODELS / sizeof BL_MODELS[0])

#endif
