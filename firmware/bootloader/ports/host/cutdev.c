/* The core as a power-cut test device (docs/protocol.md §10.5), driven line by line over
 * stdin/stdout by simulators/mcu/cutnative.py, so the Python enumerator (cutcheck.py) runs
 * the same cut sequences against this C code as against the Python model. Build it under
 * ASan and UBSan: a torn write must never become an overrun.
 *
 * Flash is RAM that outlives every power cycle; a power-on is bl_init on a fresh bl_t.
 * A cut is armed at the Nth flash operation: an erase does not happen, a program lands its
 * first half (torn, as the Python Flash model and the host port do), and the core is left
 * by longjmp, as a real part loses power mid-instruction. Time is virtual: `wait` moves it
 * and runs the virtual app (ports/common/sim_app.c: confirms 100 ms after a trial boot).
 *
 * Commands (one line each; answers "ok ...", "cut ..." or "err ..."):
 *   new MODEL [APP_VERSION]   blank flash of that model, factory app (none if omitted)
 *   arm N                     cut at the Nth flash op from now (0: disarm); resets the count
 *   power | stay              cold start: boot decision (stay: RESET(STAY), no decision)
 *   req HEX                   wire bytes in; "ok HEX" of the bytes sent back (a RESET reboots)
 *   wait MS                   advance virtual time
 *   ops                       flash ops since the last arm
 *   state                     "ok MODE SLOT TRIAL WATCHDOG_MS" (SLOT 255: none; 0: unarmed)
 *   running                   SHA-256 of the running image ("ok -" in the bootloader)
 *   slots                     SHA-256 of each slot's first `size` bytes per its trailer
 *   load PATH | save PATH     the whole flash from/to a file (test set-up and inspection) */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_models.h"
#include "sim_app.h"

static bl_t g_bl;
static bl_config_t g_cfg;
static uint8_t *g_flash;
static uint32_t g_flash_size;
static long g_ops, g_cut_at;
static int g_dead = 1;
static uint32_t g_now;
static sim_app_t g_app;
static jmp_buf g_cut;
static uint8_t *g_out;
static size_t g_out_len, g_out_cap;

void hal_uart_write(const uint8_t *p, size_t n) {
    if (g_out_len + n > g_out_cap) {
        g_out_cap = (g_out_len + n) * 2;
        g_out = realloc(g_out, g_out_cap);
        if (!g_out) abort();
    }
    memcpy(g_out + g_out_len, p, n);
    g_out_len += n;
}
void hal_uart_flush(void) {}
int hal_uart_set_baud(uint32_t baud) { (void)baud; return 0; }
uint32_t hal_millis(void) { return g_now; }
static uint32_t g_wd_ms; /* armed watchdog's timeout; 0: not armed */
void hal_watchdog_start(uint32_t ms) {
    if (!g_wd_ms) g_wd_ms = ms; /* once armed it cannot be changed or stopped */
}
void hal_watchdog_feed(void) {}
size_t hal_uid(uint8_t *o, size_t max) {
    static const uint8_t uid[2] = {0xC0, 0x7C};
    (void)max;
    memcpy(o, uid, 2);
    return 2;
}
int hal_hook(struct bl *bl, int ev, uint32_t a, uint32_t b) {
    (void)bl; (void)ev; (void)a; (void)b;
    return 0;
}

static int g_trace; /* CUTDEV_TRACE=1: each flash op on stderr, to compare with the model */

static void op(const char *kind, uint32_t addr) { /* count one op; the armed one loses power */
    if (g_trace) fprintf(stderr, "op %ld %s 0x%x\n", g_ops + 1, kind, (unsigned)addr);
    if (++g_ops == g_cut_at) {
        g_cut_at = 0;
        g_dead = 1;
        longjmp(g_cut, 1);
    }
}

static int in_flash(uint32_t a, uint32_t n) { return a <= g_flash_size && n <= g_flash_size - a; }

int hal_flash_erase(uint32_t a) {
    if (a % g_cfg.sector_size || !in_flash(a, g_cfg.sector_size)) {
        fprintf(stderr, "cutdev: bad erase 0x%x\n", (unsigned)a);
        abort();
    }
    op("erase", a);
    memset(g_flash + a, 0xFF, g_cfg.sector_size);
    return 0;
}

int hal_flash_program(uint32_t a, const uint8_t *p, uint32_t n) {
    uint32_t i, ws = g_cfg.write_size;
    if (a % ws || n % ws || !in_flash(a, n)) {
        fprintf(stderr, "cutdev: bad program 0x%x+%u\n", (unsigned)a, (unsigned)n);
        abort();
    }
    if (g_ops + 1 == g_cut_at) { /* torn: the first half lands */
        uint32_t half = n / 2 - (n / 2) % ws;
        for (i = 0; i < half; i++) g_flash[a + i] &= p[i];
    }
    op("program", a);
    for (i = 0; i < n; i++) g_flash[a + i] &= p[i];
    return 0;
}

int hal_flash_read(uint32_t a, uint8_t *p, uint32_t n) {
    if (!in_flash(a, n)) {
        fprintf(stderr, "cutdev: bad read 0x%x+%u\n", (unsigned)a, (unsigned)n);
        abort();
    }
    memcpy(p, g_flash + a, n);
    return 0;
}

/* ------------------------------------------------------------------ the device */

static void boot(int stay) {
    g_dead = 0;
    g_wd_ms = 0; /* a reset disarms it (as on the LM3S6965; an STM32 IWDG would stay armed) */
    if (bl_init(&g_bl, &g_cfg, stay, 115200) != 0) {
        printf("err configuration refused: %s\n", bl_config_error(&g_cfg));
        exit(2);
    }
    sim_app_booted(&g_app, &g_bl, g_now, 0);
}

static void put_hex(const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) printf("%02x", p[i]);
}

static void slot_sha(unsigned slot, uint8_t out[32]) {
    bl_slot_t st;
    bl_sha256_t h;
    bl_slot_status(&g_bl.store, slot, &st);
    bl_sha256_init(&h);
    bl_sha256_update(&h, g_flash + bl_image_base(&g_bl.store, slot), st.size);
    bl_sha256_final(&h, out);
}

static int unhex(const char *s, uint8_t *o, size_t max) {
    size_t n = 0;
    while (s[0] && s[1] && s[0] != '\n' && n < max) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1) return -1;
        o[n++] = (uint8_t)v;
        s += 2;
    }
    return (int)n;
}

static int file_io(const char *path, int save) {
    FILE *f = fopen(path, save ? "wb" : "rb");
    size_t n;
    if (!f) return -1;
    n = save ? fwrite(g_flash, 1, g_flash_size, f) : fread(g_flash, 1, g_flash_size, f);
    fclose(f);
    return n == g_flash_size ? 0 : -1;
}

static void cmd(char *line) {
    static uint8_t wire[65536];
    char *arg = strchr(line, ' ');
    uint8_t sha[32];
    if (arg) *arg++ = 0;
    else arg = line + strlen(line);
    if (!strcmp(line, "new")) {
        char *ver = strchr(arg, ' ');
        size_t i;
        if (ver) *ver++ = 0;
        for (i = 0; i < BL_MODEL_COUNT && strcmp(BL_MODELS[i].name, arg); i++) {}
        if (i == BL_MODEL_COUNT) {
            printf("err unknown model %s\n", arg);
            return;
        }
        g_cfg = BL_MODELS[i];
        g_flash_size = 2u * (g_cfg.slot_size + g_cfg.trailer_size);
        free(g_flash);
        g_flash = malloc(g_flash_size);
        if (!g_flash) abort();
        memset(g_flash, 0xFF, g_flash_size);
        memset(&g_bl, 0, sizeof g_bl);
        g_bl.store.cfg = &g_cfg;
        g_cut_at = g_ops = 0;
        g_now = 0;
        g_dead = 1;
        if (ver && *ver) sim_factory_install(&g_bl.store, ver);
        printf("ok\n");
        return;
    }
    if (!g_flash) {
        printf("err no device (new MODEL first)\n");
        return;
    }
    g_out_len = 0;
    if (setjmp(g_cut)) {
        printf("cut ");
        put_hex(g_out, g_out_len); /* what left the UART before the power went */
        printf("\n");
        return;
    }
    if (!strcmp(line, "arm")) {
        g_cut_at = atol(arg);
        g_ops = 0;
        printf("ok\n");
    } else if (!strcmp(line, "ops")) {
        printf("ok %ld\n", g_ops);
    } else if (!strcmp(line, "power") || !strcmp(line, "stay")) {
        boot(line[0] == 's');
        printf("ok\n");
    } else if (!strcmp(line, "load") || !strcmp(line, "save")) {
        printf(file_io(arg, line[0] == 's') ? "err %s\n" : "ok\n", arg);
    } else if (g_dead) {
        printf("err no power\n");
    } else if (!strcmp(line, "req")) {
        int n = unhex(arg, wire, sizeof wire);
        if (n < 0) {
            printf("err bad hex\n");
            return;
        }
        bl_feed(&g_bl, wire, (size_t)n);
        if (g_bl.reset_req) boot(g_bl.reset_req == 2); /* the answer left before the reset */
        printf("ok ");
        put_hex(g_out, g_out_len);
        printf("\n");
    } else if (!strcmp(line, "wait")) {
        uint32_t end = g_now + (uint32_t)atol(arg);
        while (g_now < end) {
            g_now = end - g_now < 10u ? end : g_now + 10u;
            bl_tick(&g_bl, g_now);
            if (sim_app_tick(&g_app, &g_bl, g_now) == 1) boot(0); /* never: no faults here */
        }
        printf("ok\n");
    } else if (!strcmp(line, "state")) {
        printf("ok %u %u %u %u\n", g_bl.mode, g_bl.running_slot, g_bl.booted_trial,
               (unsigned)g_wd_ms);
    } else if (!strcmp(line, "running")) {
        if (g_bl.mode != BL_MODE_APP) {
            printf("ok -\n");
            return;
        }
        slot_sha(g_bl.running_slot, sha);
        printf("ok ");
        put_hex(sha, 32);
        printf("\n");
    } else if (!strcmp(line, "slots")) {
        unsigned i;
        printf("ok");
        for (i = 0; i < 2; i++) {
            slot_sha(i, sha);
            printf(" ");
            put_hex(sha, 32);
        }
        printf("\n");
    } else {
        printf("err unknown command %s\n", line);
    }
}

int main(void) {
    static char line[140000];
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    g_trace = getenv("CUTDEV_TRACE") != NULL;
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n) cmd(line);
        fflush(stdout);
    }
    free(g_flash);
    free(g_out);
    return 0;
}
