#include "sim_faults.h"

#include <string.h>

#include "bl_hal.h"

static double corrupt_rx, corrupt_tx, drop_rx, drop_tx;
static uint64_t rng = 1;
static long cut_at = -1, cut_op = -1, ops, phase_ops;
static double cut_frac = -1;
static int cut_phase, cut_phase_k = 1, phase;
static uint16_t refuse, mute;
static char crash[4][81], hang[4][81];
static int ncrash, nhang;
static uint32_t image_size;
int sim_fault_baud_fail;
unsigned sim_fault_delay_ms;

static const char *const OPS[] = {"", "hello", "info", "begin", "data", "verify", "activate",
                                  "reset", "confirm", "abort", "set_baud"};
static const char *const PHASES[] = {"", "begin", "data", "verify", "activate", "boot",
                                     "confirm", "abort"};

uint32_t sim_parse_uint(const char *s) {
    uint32_t v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10u + (uint32_t)(*s++ - '0');
    return v;
}

double sim_parse_decimal(const char *s, const char **end) {
    double v = 0, scale = 1;
    int frac = 0, any = 0;
    for (; (*s >= '0' && *s <= '9') || (*s == '.' && !frac); s++) {
        if (*s == '.') { frac = 1; continue; }
        any = 1;
        if (frac) { scale /= 10; v += (*s - '0') * scale; }
        else v = v * 10 + (*s - '0');
    }
    if (end) *end = any ? s : NULL;
    return v;
}

static double rnd(void) { /* xorshift64*: seeded, so fault runs repeat */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static int lookup(const char *const *names, int n, const char *s, size_t len) {
    int i;
    for (i = 1; i < n; i++) {
        size_t k;
        int same = strlen(names[i]) == len;
        for (k = 0; same && k < len; k++) same = (s[k] | 0x20) == names[i][k] || s[k] == names[i][k];
        if (same) return i;
    }
    return -1;
}

static int key_is(const char *spec, size_t k, const char *key) {
    return strlen(key) == k && strncmp(spec, key, k) == 0;
}

void sim_fault_parse(const char *spec) {
    const char *eq = strchr(spec, '='), *v = eq ? eq + 1 : "", *end;
    size_t k = eq ? (size_t)(eq - spec) : strlen(spec);
    if (key_is(spec, k, "corrupt") || key_is(spec, k, "drop")) {
        double r = sim_parse_decimal(v, &end);
        const char *dir = end && *end == ':' ? end + 1 : "both";
        int rx = !strcmp(dir, "rx") || !strcmp(dir, "both"), tx = !strcmp(dir, "tx") || !strcmp(dir, "both");
        if (!end || r > 1 || (!rx && !tx) || (*end && *end != ':'))
            port_fail("bad fault (rate 0..1, direction rx|tx|both)", spec);
        if (spec[0] == 'c') {
            if (rx) corrupt_rx = r;
            if (tx) corrupt_tx = r;
        } else {
            if (rx) drop_rx = r;
            if (tx) drop_tx = r;
        }
    } else if (key_is(spec, k, "seed")) {
        rng = (uint64_t)sim_parse_uint(v) * 0x9E3779B97F4A7C15ull + 1;
    } else if (key_is(spec, k, "delay")) {
        sim_fault_delay_ms = sim_parse_uint(v);
    } else if (key_is(spec, k, "cut-at")) {
        size_t n = strlen(v);
        if (n && v[n - 1] == '%') cut_frac = sim_parse_decimal(v, NULL) / 100.0;
        else cut_at = (long)sim_parse_uint(v);
    } else if (key_is(spec, k, "cut-op")) {
        cut_op = (long)sim_parse_uint(v);
    } else if (key_is(spec, k, "cut-phase")) {
        const char *colon = strchr(v, ':');
        cut_phase = lookup(PHASES, 8, v, colon ? (size_t)(colon - v) : strlen(v));
        if (cut_phase < 0) port_fail("unknown phase in fault", spec);
        cut_phase_k = colon ? (int)sim_parse_uint(colon + 1) : 1;
    } else if (key_is(spec, k, "refuse") || key_is(spec, k, "mute")) {
        int op = lookup(OPS, 11, v, strlen(v));
        if (op < 0) port_fail("unknown opcode in fault", spec);
        if (spec[0] == 'r') refuse |= (uint16_t)(1u << op);
        else mute |= (uint16_t)(1u << op);
    } else if (key_is(spec, k, "crash-on-boot")) {
        if (!*v || ncrash == 4 || strlen(v) > 80) port_fail("crash-on-boot needs a version", spec);
        strcpy(crash[ncrash++], v);
    } else if (key_is(spec, k, "hang-on-boot")) {
        if (!*v || nhang == 4 || strlen(v) > 80) port_fail("hang-on-boot needs a version", spec);
        strcpy(hang[nhang++], v);
    } else if (key_is(spec, k, "baud-fail")) {
        sim_fault_baud_fail = 1;
    } else {
        port_fail("unknown fault", spec);
    }
}

size_t sim_fault_link(uint8_t *p, size_t n, int tx) {
    double c = tx ? corrupt_tx : corrupt_rx, d = tx ? drop_tx : drop_rx;
    size_t i, k = 0;
    if (c <= 0 && d <= 0) return n;
    for (i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (d > 0 && rnd() < d) continue;
        if (c > 0 && rnd() < c) b ^= (uint8_t)(1u << (int)(rnd() * 8));
        p[k++] = b;
    }
    return k;
}

int sim_fault_flash_op(void) {
    ops++;
    phase_ops++;
    return cut_op == ops || (cut_phase && cut_phase == phase && phase_ops == cut_phase_k);
}

const char *sim_fault_phase(void) {
    return phase == BL_PH_BOOT ? "power-on (boot decision)" : phase ? PHASES[phase] : "power-on";
}

int sim_fault_crashes(const char *version) {
    int i;
    for (i = 0; i < ncrash; i++)
        if (!strcmp(crash[i], version)) return 1;
    for (i = 0; i < nhang; i++)
        if (!strcmp(hang[i], version)) return 2;
    return 0;
}

int hal_hook(bl_t *bl, int ev, uint32_t a, uint32_t b) {
    (void)bl;
    switch (ev) {
    case BL_EV_PHASE:
        if ((int)a != phase || a != BL_PH_DATA) { /* DATA ops count across frames */
            phase = (int)a;
            phase_ops = 0;
        }
        return 0;
    case BL_EV_SIZE:
        image_size = a;
        return 0;
    case BL_EV_PROGRAM: {
        long cut = cut_at >= 0 ? cut_at : cut_frac >= 0 ? (long)(image_size * cut_frac) : -1;
        if (cut >= 0 && (long)a < cut && cut <= (long)b) port_power_cut("image offset", (uint32_t)cut);
        return 0;
    }
    case BL_EV_REQUEST:
        if (a < 16 && ((mute >> a) & 1u)) return 1;
        if (a < 16 && ((refuse >> a) & 1u)) return 2;
        return 0;
    default:
        return 0;
    }
}
