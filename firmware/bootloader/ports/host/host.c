/* Linux port: the reference bootloader on a pseudo-terminal with file-backed flash.
 *
 * Same state directory layout as the Python virtual MCU (device.json, flash.bin), the
 * same flash timing model (sleeps for erase/program time scaled by --flash-scale) and
 * the same power-cut faults: a cut prints "sim: power cut at ..." and exits with 3,
 * leaving flash.bin exactly as a real part would keep it (it is mmap'ed shared, so
 * every program or erase is in the file the moment it happens). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_models.h"
#include "sim_app.h"
#include "sim_faults.h"

#define POWER_CUT_EXIT 3

static bl_t g_bl;
static bl_config_t g_cfg;
static uint8_t *g_flash;
static uint32_t g_flash_size;
static int g_master = -1;
static uint8_t g_uid[32];
static size_t g_uid_len;
static double g_scale = 1.0;
static uint32_t g_baud, g_base_baud;
static int f_deaf;
static uint8_t g_txbuf[4096];
static size_t g_txlen;

static void die(int code, const char *fmt, ...) __attribute__((noreturn));
static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("sim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

void port_power_cut(const char *what, uint32_t n) {
    fprintf(stderr, "sim: power cut at %s %u during %s\n", what, (unsigned)n, sim_fault_phase());
    _exit(POWER_CUT_EXIT);
}

void port_fail(const char *msg, const char *detail) { die(2, "%s: %s", msg, detail); }

static void sleep_us(double us) {
    struct timespec ts;
    if (us <= 0) return;
    ts.tv_sec = (time_t)(us / 1e6);
    ts.tv_nsec = (long)((us - ts.tv_sec * 1e6) * 1000);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

uint32_t hal_millis(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000u + ts.tv_nsec / 1000000);
}

/* ------------------------------------------------------------------ UART */

/* Timing model, the Python simulator's: a flash operation applies at once and keeps the
 * MCU busy for its modelled time; an answer leaves once the work before it is done and
 * then takes its wire time; received bytes reach the core when their last bit would
 * have arrived, byte by byte (a window the host wrote at once is not handed over whole
 * at its end, which would stall the pipeline). The pty is read promptly meanwhile, as a
 * UART ring would be. */
typedef struct {
    double due;   /* the last byte's time */
    double start; /* receive: when the first byte starts arriving */
    size_t off;   /* receive: bytes already handed to the core */
    size_t len;
    uint8_t data[4096];
} chunk_t;
#define QLEN 64
static chunk_t g_txq[QLEN], g_rxq[QLEN];
static int g_txh, g_txn, g_rxh, g_rxn;
static double g_busy_until, g_tx_clock, g_rx_clock;

static void write_all(const uint8_t *out, size_t n) {
    size_t i;
    for (i = 0; i < n;) {
        ssize_t w = write(g_master, out + i, n - i);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct pollfd p = {g_master, POLLOUT, 0};
                if (poll(&p, 1, 1000) <= 0) break; /* nobody reading: lost, as on a UART */
                continue;
            }
            break;
        }
        i += (size_t)w;
    }
}

static void send_due(double now) {
    while (g_txn && g_txq[g_txh].due <= now) {
        write_all(g_txq[g_txh].data, g_txq[g_txh].len);
        g_txh = (g_txh + 1) % QLEN;
        g_txn--;
    }
}

static void tx_out(void) {
    double now = now_us(), due = (g_busy_until > now ? g_busy_until : now) + sim_fault_delay_ms * 1e3;
    chunk_t *c;
    if (g_txn == QLEN) { /* the queue is full: wait for the oldest answer to leave */
        sleep_us(g_txq[g_txh].due - now);
        send_due(g_txq[g_txh].due);
    }
    if (g_baud) {
        g_tx_clock = (g_tx_clock > due ? g_tx_clock : due) + g_txlen * 10e6 / g_baud;
        due = g_tx_clock;
    }
    c = &g_txq[(g_txh + g_txn++) % QLEN];
    c->due = due;
    memcpy(c->data, g_txbuf, g_txlen);
    c->len = sim_fault_link(c->data, g_txlen, 1);
    g_txlen = 0;
}

void hal_uart_write(const uint8_t *p, size_t n) {
    while (n--) {
        g_txbuf[g_txlen++] = *p;
        if (*p++ == 0 || g_txlen == sizeof g_txq[0].data) tx_out();
    }
}

void hal_uart_flush(void) { /* block until the last answer has left */
    if (g_txlen) tx_out();
    while (g_txn) {
        double due = g_txq[g_txh].due;
        sleep_us(due - now_us());
        send_due(due);
    }
}

static void rx_in(const uint8_t *p, size_t n) {
    double now = now_us();
    chunk_t *c;
    if (g_rxn == QLEN) return; /* 256 KiB unread: far beyond any window, lost */
    c = &g_rxq[(g_rxh + g_rxn++) % QLEN];
    c->start = g_rx_clock > now ? g_rx_clock : now;
    g_rx_clock = c->start + (g_baud ? n * 10e6 / g_baud : 0);
    c->due = g_rx_clock;
    memcpy(c->data, p, n);
    c->len = n;
    c->off = 0;
}

/* Bytes of the head chunk that have arrived by ``now``. */
static size_t rx_arrived(const chunk_t *c, double now) {
    size_t k;
    if (!g_baud || c->due <= now) return c->len;
    if (now <= c->start) return 0;
    k = (size_t)((now - c->start) * g_baud / 10e6);
    return k < c->len ? k : c->len;
}

/* Hand received bytes whose time has come to the core (none after a reset request). The
 * link faults see each chunk whole, once, before its first byte is handed over. */
static void deliver_due(double now) {
    while (g_rxn && !g_bl.reset_req) {
        chunk_t *c = &g_rxq[g_rxh];
        size_t k = rx_arrived(c, now);
        if (c->off == 0 && k > 0) c->len = sim_fault_link(c->data, c->len, 0);
        if (k > c->len) k = c->len;
        if (k > c->off && !f_deaf) bl_feed(&g_bl, c->data + c->off, k - c->off);
        if (k > c->off) c->off = k;
        if (c->off < c->len) break;
        g_rxh = (g_rxh + 1) % QLEN;
        g_rxn--;
    }
}

static int next_timeout_ms(void) {
    double next = now_us() + 10e3, now = now_us();
    if (g_txn && g_txq[g_txh].due < next) next = g_txq[g_txh].due;
    if (g_rxn) {
        const chunk_t *c = &g_rxq[g_rxh];
        double byte = g_baud ? c->start + (double)(c->off + 1) * 10e6 / g_baud : now;
        if (byte < next) next = byte;
    }
    return next <= now ? 0 : (int)((next - now) / 1e3) + 1;
}

int hal_uart_set_baud(uint32_t baud) {
    f_deaf = sim_fault_baud_fail && baud != g_base_baud;
    if (g_base_baud) g_baud = baud; /* an unpaced link stays unpaced */
    return 0;
}

/* The watchdog: armed by the core before a trial boot, disarmed by the reset it causes. */
static uint32_t g_wd_ms, g_wd_fed;

void hal_watchdog_start(uint32_t ms) {
    if (!g_wd_ms) g_wd_ms = ms;
    g_wd_fed = hal_millis();
}

void hal_watchdog_feed(void) { g_wd_fed = hal_millis(); }

static int watchdog_expired(uint32_t now) { return g_wd_ms && now - g_wd_fed >= g_wd_ms; }

size_t hal_uid(uint8_t *out, size_t max) {
    size_t n = g_uid_len < max ? g_uid_len : max;
    memcpy(out, g_uid, n);
    return n;
}

/* ------------------------------------------------------------------ flash */

static void busy(double us) {
    double now = now_us();
    g_busy_until = (g_busy_until > now ? g_busy_until : now) + us;
}

static int in_range(uint32_t addr, uint32_t n) { return addr <= g_flash_size && n <= g_flash_size - addr; }

int hal_flash_erase(uint32_t addr) {
    if (addr % g_cfg.sector_size || !in_range(addr, g_cfg.sector_size)) return -1;
    if (sim_fault_flash_op()) port_power_cut("flash op (erase), address", addr);
    memset(g_flash + addr, 0xFF, g_cfg.sector_size);
    busy(g_cfg.erase_us);
    return 0;
}

int hal_flash_program(uint32_t addr, const uint8_t *p, uint32_t n) {
    uint32_t i, ws = g_cfg.write_size;
    if (addr % ws || n % ws || !in_range(addr, n)) return -1;
    if (sim_fault_flash_op()) {
        uint32_t half = n / 2 - (n / 2) % ws; /* torn write: the first half lands */
        for (i = 0; i < half; i++) g_flash[addr + i] &= p[i];
        port_power_cut("flash op (program, torn), address", addr);
    }
    for (i = 0; i < n; i++) g_flash[addr + i] &= p[i];
    busy((double)((n + g_cfg.page_size - 1) / g_cfg.page_size) * g_cfg.program_us);
    return 0;
}

int hal_flash_read(uint32_t addr, uint8_t *p, uint32_t n) {
    if (!in_range(addr, n)) return -1;
    memcpy(p, g_flash + addr, n);
    return 0;
}

/* ------------------------------------------------------------------ setup */

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static size_t parse_hex(const char *s, uint8_t *out, size_t max) {
    size_t n = 0;
    while (s[0] && s[1] && n < max && hexval(s[0]) >= 0 && hexval(s[1]) >= 0) {
        out[n++] = (uint8_t)(hexval(s[0]) << 4 | hexval(s[1]));
        s += 2;
    }
    return n;
}

static int json_str(const char *json, const char *key, char *out, size_t max) {
    char pat[32];
    const char *p, *e;
    snprintf(pat, sizeof pat, "\"%s\"", key);
    p = strstr(json, pat);
    if (!p) return 0;
    p = strchr(p + strlen(pat), '"');
    if (!p) return 0;
    e = strchr(++p, '"');
    if (!e || (size_t)(e - p) >= max) return 0;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return 1;
}

static const bl_config_t *identity(const char *dir, const char *want_model, const char *want_uid) {
    char path[4096], buf[512] = "", model[32] = "", uidhex[80] = "";
    FILE *f;
    size_t i;
    const bl_config_t *m = NULL;
    snprintf(path, sizeof path, "%s/device.json", dir);
    f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        if (!json_str(buf, "model", model, sizeof model) || !json_str(buf, "uid", uidhex, sizeof uidhex))
            die(2, "%s: unreadable identity file", path);
        if (want_model && strcmp(want_model, model))
            die(2, "%s holds a %s MCU, not %s; use another --state directory", dir, model, want_model);
        g_uid_len = parse_hex(uidhex, g_uid, sizeof g_uid);
        if (want_uid && strcasecmp(want_uid, uidhex))
            die(2, "%s holds MCU uid %s, not %s", dir, uidhex, want_uid);
    } else {
        snprintf(model, sizeof model, "%s", want_model ? want_model : "vmcu-f4");
        if (want_uid) {
            g_uid_len = parse_hex(want_uid, g_uid, sizeof g_uid);
        } else {
            int fd = open("/dev/urandom", O_RDONLY);
            g_uid_len = 12;
            if (fd < 0 || read(fd, g_uid, 12) != 12) die(2, "no entropy for a uid");
            close(fd);
        }
    }
    for (i = 0; i < BL_MODEL_COUNT; i++)
        if (!strcmp(BL_MODELS[i].name, model)) m = &BL_MODELS[i];
    if (!m) die(2, "unknown model '%s'; choose one of vmcu-f4, vmcu-l0, vmcu-h7", model);
    if (!f) {
        f = fopen(path, "w");
        if (!f) die(2, "%s: %s", path, strerror(errno));
        fprintf(f, "{\"model\": \"%s\", \"uid\": \"", model);
        for (i = 0; i < g_uid_len; i++) fprintf(f, "%02x", g_uid[i]);
        fprintf(f, "\"}\n");
        fclose(f);
    }
    return m;
}

static void open_flash(const char *dir) {
    char path[4096];
    struct stat sb;
    int fd;
    g_flash_size = 2u * (g_cfg.slot_size + g_cfg.trailer_size);
    snprintf(path, sizeof path, "%s/flash.bin", dir);
    fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || fstat(fd, &sb) != 0) die(2, "%s: %s", path, strerror(errno));
    if ((uint64_t)sb.st_size != g_flash_size) { /* blank part: all erased */
        static uint8_t ff[65536];
        uint32_t off;
        memset(ff, 0xFF, sizeof ff);
        if (ftruncate(fd, 0) != 0) die(2, "%s: %s", path, strerror(errno));
        for (off = 0; off < g_flash_size; off += sizeof ff) {
            size_t n = g_flash_size - off < sizeof ff ? g_flash_size - off : sizeof ff;
            if (pwrite(fd, ff, n, off) != (ssize_t)n) die(2, "%s: write failed", path);
        }
    }
    g_flash = mmap(NULL, g_flash_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (g_flash == MAP_FAILED) die(2, "%s: mmap: %s", path, strerror(errno));
    close(fd);
}

static int open_pty(const char *link) {
    struct termios t;
    int slave;
    char *name;
    g_master = posix_openpt(O_RDWR | O_NOCTTY);
    if (g_master < 0 || grantpt(g_master) || unlockpt(g_master) || !(name = ptsname(g_master)))
        die(2, "cannot open a pty: %s", strerror(errno));
    slave = open(name, O_RDWR | O_NOCTTY); /* held open so reads never see EIO between clients */
    if (slave < 0 || tcgetattr(slave, &t) != 0) die(2, "%s: %s", name, strerror(errno));
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    fcntl(g_master, F_SETFL, O_NONBLOCK);
    if (link) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", link);
        unlink(tmp);
        if (symlink(name, tmp) != 0 || rename(tmp, link) != 0) die(2, "%s: %s", link, strerror(errno));
    }
    printf("PTY %s\n", name);
    fflush(stdout);
    return slave;
}

static int crashes(void) {
    bl_slot_t st;
    if (g_bl.mode != BL_MODE_APP) return 0;
    bl_slot_status(&g_bl.store, g_bl.running_slot, &st);
    return sim_fault_crashes(st.version);
}

static void discard_input(uint32_t ms) { /* rebooting: bytes that arrive now are lost */
    uint32_t end = hal_millis() + ms;
    uint8_t buf[4096];
    for (;;) {
        int left = (int)(end - hal_millis());
        struct pollfd p = {g_master, POLLIN, 0};
        if (left <= 0) break;
        if (poll(&p, 1, left) > 0) (void)!read(g_master, buf, sizeof buf);
    }
}

int main(int argc, char **argv) {
    const char *state = NULL, *model = NULL, *uid = NULL, *app_version = "1.0.0", *link = NULL;
    int i, proto = -1;
    long baud = 115200;
    sim_app_t app = {0, 0};
    uint8_t buf[4096];
    int hung = 0;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--pty")) continue;
        if (!strcmp(a, "--no-app")) {
            app_version = "";
            continue;
        }
        if (!v) die(2, "%s needs a value", a);
        i++;
        if (!strcmp(a, "--state")) state = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--uid")) uid = v;
        else if (!strcmp(a, "--baud")) baud = atol(v);
        else if (!strcmp(a, "--app-version")) app_version = v;
        else if (!strcmp(a, "--flash-scale")) g_scale = atof(v);
        else if (!strcmp(a, "--turnaround-ms")) continue; /* no modelled turnaround: real code */
        else if (!strcmp(a, "--protocol-version")) proto = atoi(v);
        else if (!strcmp(a, "--fault")) sim_fault_parse(v);
        else if (!strcmp(a, "--link")) link = v;
        else die(2, "unknown option %s", a);
    }
    if (!state) die(2, "--state DIR is required");
    mkdir(state, 0755);
    g_cfg = *identity(state, model, uid);
    g_cfg.erase_us = (uint32_t)(g_cfg.erase_us * g_scale);
    g_cfg.program_us = (uint32_t)(g_cfg.program_us * g_scale);
    g_cfg.hash_us_per_kib = (uint32_t)(g_cfg.hash_us_per_kib * g_scale);
    if (proto >= 0) g_cfg.protocol_version = (uint8_t)proto;
    g_baud = g_base_baud = (uint32_t)baud;
    open_flash(state);
    g_bl.store.cfg = &g_cfg;
    sim_factory_install(&g_bl.store, app_version);
    /* Power-on first: a cut in the boot decision exits before a port is announced. */
    if (bl_init(&g_bl, &g_cfg, 0, g_baud) != 0)
        die(2, "configuration refused: %s", bl_config_error(&g_cfg));
    (void)open_pty(link);
    sim_app_booted(&app, &g_bl, hal_millis(), crashes());
    for (;;) {
        struct pollfd p = {g_master, POLLIN, 0};
        uint32_t now;
        if (poll(&p, 1, next_timeout_ms()) > 0) {
            ssize_t r = read(g_master, buf, sizeof buf);
            if (r > 0) rx_in(buf, (size_t)r);
        }
        if (hung) g_rxn = 0; /* a hung app reads nothing */
        else deliver_due(now_us());
        send_due(now_us());
        now = hal_millis();
        if (hung) { /* nothing runs: no answers, no feeding; input is lost */
            g_rxn = 0;
            if (watchdog_expired(now)) {
                fprintf(stderr, "sim: watchdog reset\n");
                hung = 0;
                g_bl.reset_req = 1;
            }
        } else {
            int app_did = sim_app_tick(&app, &g_bl, now);
            bl_tick(&g_bl, now);
            if (app_did == 1) g_bl.reset_req = 1; /* the app crashed */
            if (app_did == 2) hung = 1;
        }
        if (g_bl.reset_req) {
            int stay = g_bl.reset_req == 2;
            hal_uart_flush();
            g_rxn = 0; /* whatever was received is lost in the reboot */
            discard_input(g_cfg.boot_ms);
            g_wd_ms = 0; /* the reset disarms the watchdog (as on the LM3S6965) */
            (void)bl_init(&g_bl, &g_cfg, stay, g_base_baud); /* accepted at power-on */
            g_baud = g_base_baud;
            g_busy_until = 0;
            f_deaf = 0;
            sim_app_booted(&app, &g_bl, hal_millis(), crashes());
        }
    }
}
