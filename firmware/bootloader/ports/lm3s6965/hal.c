/* LM3S6965 board support under QEMU, shared by the bootloader (main.c) and the example
 * application (example/app.c): PL011 UART0 with an interrupt-fed receive ring, the
 * watchdog, flash kept in a host file through ARM semihosting (QEMU -semihosting-config
 * target=native), options from the semihosting command line. A real part replaces the
 * semihosting calls with its flash controller; the ring and the main loops stay. */
#include <stdint.h>
#include <string.h>

#include "bl.h"
#include "bl_hal.h"
#include "bl_models.h"
#include "board.h"
#include "sim_faults.h"

#ifndef BL_MODEL_NAME
#define BL_MODEL_NAME "vmcu-l0"
#endif
#ifndef RX_RING
#define RX_RING (BL_WINDOW_MAX + BL_RX_MAX) /* all the client may have in flight (README) */
#endif

#define UART0 0x4000C000u
#define UART_DR REG(UART0 + 0x000)
#define UART_FR REG(UART0 + 0x018)
#define UART_CR REG(UART0 + 0x030)
#define UART_IMSC REG(UART0 + 0x038)
#define UART_ICR REG(UART0 + 0x044)
#define NVIC_ISER0 REG(0xE000E100u)
#define FR_RXFE 0x10u
#define FR_TXFF 0x20u
#define FR_BUSY 0x08u

static volatile uint8_t ring[RX_RING];
static volatile uint32_t ring_head, ring_tail, ring_lost;
bl_t g_bl;
bl_config_t g_cfg;
static int g_flash_fd = -1;
static uint8_t g_uid[32];
static size_t g_uid_len;
int g_deaf;

/* ------------------------------------------------------------------ semihosting */

static int semi(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semi_exit(int code) {
    uint32_t a[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    (void)semi(0x20 /* SYS_EXIT_EXTENDED */, a);
    for (;;) {}
}

void semi_err(const char *s) {
    static int fd = -2;
    uint32_t a[3];
    if (fd == -2) {
        a[0] = (uint32_t)":tt"; a[1] = 8; a[2] = 3; /* mode "a": the host's stderr */
        fd = semi(0x01, a);
    }
    if (fd < 0) return;
    a[0] = (uint32_t)fd; a[1] = (uint32_t)s; a[2] = strlen(s);
    (void)semi(0x05, a);
}

static int file_io(int op, uint32_t off, void *p, uint32_t n) {
    uint32_t a[3] = {(uint32_t)g_flash_fd, off, 0};
    if (semi(0x0A /* SYS_SEEK */, a) != 0) return -1;
    a[1] = (uint32_t)p;
    a[2] = n;
    return semi(op, a) == 0 ? 0 : -1; /* returns the bytes NOT transferred */
}

void port_power_cut(const char *what, uint32_t n) {
    char num[12];
    int i = 11;
    num[i] = 0;
    do num[--i] = (char)('0' + n % 10); while ((n /= 10) && i);
    semi_err("sim: power cut at ");
    semi_err(what);
    semi_err(" ");
    semi_err(num + i);
    semi_err(" during ");
    semi_err(sim_fault_phase());
    semi_err("\n");
    semi_exit(3);
}

void port_fail(const char *msg, const char *detail) {
    semi_err("sim: ");
    semi_err(msg);
    semi_err(": ");
    semi_err(detail);
    semi_err("\n");
    semi_exit(2);
}

/* ------------------------------------------------------------------ HAL */

void uart0_isr(void) {
    while (!(UART_FR & FR_RXFE)) {
        uint8_t b = (uint8_t)UART_DR;
        uint32_t next = (ring_head + 1u) % RX_RING;
        if (next == ring_tail) ring_lost++;
        else {
            ring[ring_head] = b;
            ring_head = next;
        }
    }
    UART_ICR = 0x7FFu;
}

void hal_uart_write(const uint8_t *p, size_t n) {
    uint8_t buf[64];
    while (n) {
        size_t k = n < sizeof buf ? n : sizeof buf, i;
        memcpy(buf, p, k);
        p += k;
        n -= k;
        k = sim_fault_link(buf, k, 1);
        for (i = 0; i < k; i++) {
            while (UART_FR & FR_TXFF) {}
            UART_DR = buf[i];
        }
    }
}

void hal_uart_flush(void) {
    while (UART_FR & FR_BUSY) {}
}

int hal_uart_set_baud(uint32_t baud) {
    /* QEMU's UART has no line rate; a real port programs IBRD/FBRD here. */
    g_deaf = sim_fault_baud_fail && baud != g_bl.old_baud && g_bl.old_baud;
    return 0;
}

/* The LM3S6965 watchdog (datasheet §13; QEMU's "luminary-watchdog"): it counts LOAD down at
 * the system clock, raises its interrupt at the first time-out and resets the part at the
 * second, so LOAD is half the timeout. Once INTEN is set it stays set until a reset. */
#define WDT0 0x40000000u
#define WDT_LOAD REG(WDT0 + 0x000)
#define WDT_CTL REG(WDT0 + 0x008)
#define WDT_ICR REG(WDT0 + 0x00C)
#define WDT_LOCK REG(WDT0 + 0xC00)
#define SYSCTL_RCGC0 REG(0x400FE100u)
#ifndef SYSCLK_HZ
#define SYSCLK_HZ 12000000u /* QEMU's lm3s6965evb system clock out of reset */
#endif

#define NVIC_WDT (1u << 18)

/* The first time-out's interrupt only wakes a main loop asleep in WFI (QEMU 7.2's SysTick
 * may have no clock), so that it runs, and feeds, at least every half period. It does not
 * feed: it masks itself until the next feed, so a loop that hangs is still reset at the
 * second time-out, interrupts on or off. */
void wdt_isr(void) { REG(0xE000E180u) = NVIC_WDT; /* ICER0 */ }

void hal_watchdog_start(uint32_t ms) {
    if (WDT_CTL & 1u) { /* already armed: it cannot be changed, only fed */
        hal_watchdog_feed();
        return;
    }
    SYSCTL_RCGC0 |= 1u << 3; /* WDT clock gate */
    WDT_LOCK = 0x1ACCE551u;
    WDT_LOAD = ms * (SYSCLK_HZ / 1000u) / 2u;
    WDT_CTL = 3u; /* INTEN (starts it) | RESEN */
    WDT_LOCK = 0;
    REG(0xE000E280u) = NVIC_WDT; /* ICPR0 */
    REG(0xE000E100u) = NVIC_WDT; /* ISER0 */
}

void hal_watchdog_feed(void) {
    if (!(WDT_CTL & 1u)) return;
    WDT_LOCK = 0x1ACCE551u;
    WDT_ICR = 1u; /* clears the first time-out and reloads the count */
    WDT_LOCK = 0;
    REG(0xE000E280u) = NVIC_WDT; /* ICPR0: a wake-up that has been served */
    REG(0xE000E100u) = NVIC_WDT; /* ISER0 */
}

uint32_t hal_millis(void) {
    return (uint32_t)semi(0x10 /* SYS_CLOCK, centiseconds */, 0) * 10u;
}

size_t hal_uid(uint8_t *out, size_t max) {
    size_t n = g_uid_len < max ? g_uid_len : max;
    memcpy(out, g_uid, n);
    return n;
}

static uint32_t flash_size(void) { return 2u * (g_cfg.slot_size + g_cfg.trailer_size); }

int hal_flash_read(uint32_t addr, uint8_t *p, uint32_t n) {
    if (addr > flash_size() || n > flash_size() - addr) return -1;
    return file_io(0x06 /* SYS_READ */, addr, p, n);
}

int hal_flash_erase(uint32_t addr) {
    static uint8_t blank[256];
    uint32_t o;
    if (addr % g_cfg.sector_size || addr + g_cfg.sector_size > flash_size()) return -1;
    if (sim_fault_flash_op()) port_power_cut("flash op (erase), address", addr);
    memset(blank, 0xFF, sizeof blank);
    for (o = 0; o < g_cfg.sector_size; o += sizeof blank)
        if (file_io(0x05 /* SYS_WRITE */, addr + o, blank, sizeof blank) != 0) return -1;
    return 0;
}

int hal_flash_program(uint32_t addr, const uint8_t *p, uint32_t n) {
    uint8_t cur[128];
    uint32_t done = 0, ws = g_cfg.write_size, limit = n;
    if (addr % ws || n % ws || addr > flash_size() || n > flash_size() - addr) return -1;
    if (sim_fault_flash_op()) limit = n / 2 - (n / 2) % ws; /* torn: the first half lands */
    while (done < limit) {
        uint32_t k = limit - done < sizeof cur ? limit - done : (uint32_t)sizeof cur, i;
        if (file_io(0x06, addr + done, cur, k) != 0) return -1;
        for (i = 0; i < k; i++) cur[i] &= p[done + i]; /* NOR: bits only go 1 -> 0 */
        if (file_io(0x05, addr + done, cur, k) != 0) return -1;
        done += k;
    }
    if (limit < n) port_power_cut("flash op (program, torn), address", addr);
    return 0;
}

/* ------------------------------------------------------------------ setup and main loop */

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

void board_open_flash(void) {
    uint32_t a[3], size = flash_size(), off;
    static uint8_t blank[256];
    a[0] = (uint32_t)"flash.bin"; a[1] = 3 /* "r+b" */; a[2] = 9;
    g_flash_fd = semi(0x01, a);
    if (g_flash_fd >= 0) {
        uint32_t f = (uint32_t)g_flash_fd;
        if ((uint32_t)semi(0x0C /* SYS_FLEN */, &f) == size) return;
        a[0] = f;
        (void)semi(0x02, a);
    }
    a[0] = (uint32_t)"flash.bin"; a[1] = 7 /* "w+b": a blank part */; a[2] = 9;
    g_flash_fd = semi(0x01, a);
    if (g_flash_fd < 0) port_fail("cannot open", "flash.bin");
    memset(blank, 0xFF, sizeof blank);
    for (off = 0; off < size; off += sizeof blank)
        if (file_io(0x05, off, blank, size - off < sizeof blank ? size - off : sizeof blank) != 0)
            port_fail("cannot write", "flash.bin");
}

static char g_cmdline[1024];
const char *app_version = "1.0.0";

void board_parse_args(void) {
    uint32_t a[2] = {(uint32_t)g_cmdline, sizeof g_cmdline - 1};
    char *argv[64], *p = g_cmdline;
    int argc = 0, i;
    if (semi(0x15 /* SYS_GET_CMDLINE */, a) != 0) return;
    g_cmdline[sizeof g_cmdline - 1] = 0;
    while (*p && argc < 64) {
        while (*p == ' ') *p++ = 0;
        if (!*p) break;
        argv[argc++] = p;
        while (*p && *p != ' ') p++;
    }
    for (i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(k, "--no-app")) { app_version = ""; continue; }
        i++;
        if (!strcmp(k, "--uid")) {
            g_uid_len = 0;
            while (v[0] && v[1] && g_uid_len < sizeof g_uid && hexval(v[0]) >= 0 && hexval(v[1]) >= 0) {
                g_uid[g_uid_len++] = (uint8_t)(hexval(v[0]) << 4 | hexval(v[1]));
                v += 2;
            }
        } else if (!strcmp(k, "--app-version")) app_version = v;
        else if (!strcmp(k, "--flash-scale")) {
            double s = sim_parse_decimal(v, 0);
            g_cfg.erase_us = (uint32_t)(g_cfg.erase_us * s);
            g_cfg.program_us = (uint32_t)(g_cfg.program_us * s);
            g_cfg.hash_us_per_kib = (uint32_t)(g_cfg.hash_us_per_kib * s);
        } else if (!strcmp(k, "--protocol-version")) g_cfg.protocol_version = (uint8_t)sim_parse_uint(v);
        else if (!strcmp(k, "--fault")) sim_fault_parse(v);
        /* --model, --baud, --turnaround-ms: fixed at build time or not modelled */
    }
}

void board_init(void) {
    unsigned i;
    for (i = 0; i < BL_MODEL_COUNT; i++)
        if (!strcmp(BL_MODELS[i].name, BL_MODEL_NAME)) g_cfg = BL_MODELS[i];
    board_parse_args();
    board_open_flash();
    g_bl.store.cfg = &g_cfg;
    UART_IMSC = 0x50u; /* receive and receive-timeout interrupts */
    UART_CR = 0x301u;  /* UARTEN | TXE | RXE */
    NVIC_ISER0 = 1u << 5;
    REG(0xE000E014u) = 120000u - 1u; /* SysTick ~10 ms: wakes WFI for the timers */
    REG(0xE000E018u) = 0;
    REG(0xE000E010u) = 3u; /* enable, interrupt, reference clock */
}

void board_reset(void) {
    hal_uart_flush();
    REG(0xE000ED0Cu) = 0x05FA0004u; /* AIRCR: VECTKEY | SYSRESETREQ */
    for (;;) {}
}

uint32_t rx_take(uint8_t *out, uint32_t max) {
    uint32_t n = 0;
    while (n < max && ring_tail != ring_head) {
        out[n++] = ring[ring_tail];
        ring_tail = (ring_tail + 1u) % RX_RING;
    }
    return n;
}

