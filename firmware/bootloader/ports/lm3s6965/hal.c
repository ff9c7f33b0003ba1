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

/* QEMU's lm3s6965evb system clock out of reset: 200 MHz / (RCC.SYSDIV + 1) with the reset
 * RCC (SYSDIV 15), hw/arm/stellaris.c ssys_calculate_system_clock; SysTick, the GPTMs and
 * the watchdog all count it. */
#ifndef SYSCLK_HZ
#define SYSCLK_HZ 12500000u
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
#define FR_RXFF 0x40u
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

/* ------------------------------------------------------------------ clock and alarm */

/* The time base is SysTick on the system clock: QEMU models it as a ptimer on its virtual
 * clock, which follows host time when -icount is off (hw/timer/armv7m_systick.c), and
 * counts its wraps here. The semihosting SYS_CLOCK is no clock for this: QEMU answers it
 * with the process's CPU time, clock() (semihosting/arm-compat-semi.c), which hardly moves
 * while the guest sleeps in WFI. */
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define ICSR REG(0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)
#define TICK_PERIOD (SYSCLK_HZ / 100u) /* one SysTick wrap every 10 ms */

static volatile uint32_t g_wraps;

void systick_isr(void) { g_wraps++; }

static uint32_t irq_off(void) {
    uint32_t m;
    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(m) : : "memory");
    return m;
}

static void irq_restore(uint32_t m) { __asm__ volatile("msr primask, %0" : : "r"(m) : "memory"); }

/* System clock ticks since board_init. A wrap whose interrupt is still pending (interrupts
 * are off here) is counted, and the count re-read after it. */
static uint64_t now_ticks(void) {
    uint32_t m = irq_off(), w = g_wraps, cvr = SYST_CVR;
    if (ICSR & ICSR_PENDSTSET) {
        w++;
        cvr = SYST_CVR;
    }
    irq_restore(m);
    return (uint64_t)w * TICK_PERIOD + (TICK_PERIOD - 1u - cvr);
}

uint32_t hal_millis(void) { return (uint32_t)(now_ticks() / (SYSCLK_HZ / 1000u)); }

/* The pacing alarm: GPTM 0 timer A, 32-bit one-shot at the system clock (its interrupt is
 * IRQ 19). QEMU's GPTM cannot be read back (TAR reads 0, hw/timer/stellaris-gptm.c), so it
 * only wakes; SysTick tells the time. */
#define GPTM0 0x40030000u
#define GPTM_CFG REG(GPTM0 + 0x000)
#define GPTM_TAMR REG(GPTM0 + 0x004)
#define GPTM_CTL REG(GPTM0 + 0x00C)
#define GPTM_IMR REG(GPTM0 + 0x018)
#define GPTM_ICR REG(GPTM0 + 0x024)
#define GPTM_TAILR REG(GPTM0 + 0x028)
#define SYSCTL_RCGC1 REG(0x400FE104u)
#define NVIC_TIMER0A (1u << 19)

static void alarm_at(uint64_t at, uint64_t now) {
    uint64_t d = at > now ? at - now : 1u;
    GPTM_CTL = 0;
    GPTM_TAILR = d > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)d;
    GPTM_CTL = 1u; /* TAEN: counts from TAILR now */
}

/* ------------------------------------------------------------------ UART */

/* The line rate is paced here, as the host port and the Python simulator pace theirs: QEMU's
 * PL011 moves bytes as fast as the host gives and takes them and ignores its baud divisors
 * (hw/char/pl011.c). A byte is 10 bits on the wire (8N1, BITS_PER_BYTE in
 * protocols/mcugw/constants.py). --baud 0 leaves the link unpaced, and a SET_BAUD does not
 * pace an unpaced link (ports/host/host.c).
 *
 * Receive: the PL011's 16-byte FIFO is on, and QEMU puts a byte in only when there is room
 * (pl011_can_receive), so bytes not yet taken wait in the host's pty. A byte is taken no
 * sooner than its last bit would have arrived: back to back after the one before it, or one
 * byte time after it was seen on an idle line.
 * Transmit: an answer is queued in chunks (up to a frame delimiter or 64 bytes), and a chunk
 * goes to the PL011 once its last byte would have left, after the chunks before it, as the
 * host port sends its chunks. Both run from the UART and alarm interrupts, so the CPU sleeps
 * in WFI while the line is busy and QEMU's I/O thread gets to move the bytes. */
#define UART_LCRH REG(UART0 + 0x02C)
#define IM_RX 0x10u
#define IM_RT 0x40u
#define BITS_PER_BYTE 10u
#define TX_CHUNK 64u
#define TX_CHUNKS 8u
#define RX_BATCH 8u

static uint32_t g_base_baud = 115200u, g_baud = 115200u;
static struct {
    uint64_t due;
    uint32_t len;
    uint8_t data[TX_CHUNK];
} g_txq[TX_CHUNKS];
static volatile uint32_t g_tx_head, g_tx_count;
static uint64_t g_tx_clock;
static uint8_t g_txbuf[TX_CHUNK];
static uint32_t g_txlen;
/* Receive pacing: byte k after g_rx_base is due at g_rx_base + k byte times. */
static volatile int g_rx_waiting;
static uint64_t g_rx_base;
static uint32_t g_rx_k;

static uint64_t wire_ticks(uint64_t bytes) {
    return bytes * BITS_PER_BYTE * SYSCLK_HZ / g_baud;
}

/* Flash work, as the host port models it: an erase or program applies at once (a kill is a
 * faithful power cut) and the answers after it leave once its modelled time has passed. */
static uint64_t g_busy_until;

static void busy(uint64_t us) {
    uint64_t now = now_ticks();
    g_busy_until = (g_busy_until > now ? g_busy_until : now) + us * SYSCLK_HZ / 1000000u;
}

static void ring_put(uint8_t b) {
    uint32_t next = (ring_head + 1u) % RX_RING;
    if (next == ring_tail) ring_lost++;
    else {
        ring[ring_head] = b;
        ring_head = next;
    }
}

/* Everything due by now: chunks out, received bytes in; then the alarm for what is next.
 * Runs with interrupts off or from an interrupt. */
static void pace_service(void) {
    uint64_t now = now_ticks(), next = UINT64_MAX;
    uint32_t i;
    while (g_tx_count && g_txq[g_tx_head].due <= now) {
        for (i = 0; i < g_txq[g_tx_head].len; i++) UART_DR = g_txq[g_tx_head].data[i];
        g_tx_head = (g_tx_head + 1u) % TX_CHUNKS;
        g_tx_count--;
    }
    if (g_tx_count) next = g_txq[g_tx_head].due;
    while (g_rx_waiting) {
        uint64_t due;
        if (UART_FR & FR_RXFE) { /* empty: the next byte interrupts (even one landing now) */
            g_rx_waiting = 0;
            UART_IMSC = IM_RX | IM_RT;
            break;
        }
        due = g_rx_base + wire_ticks(g_rx_k + 1u);
        if (due > now) {
            /* A full FIFO is a backlog: wake when half of it is due (a PL011's receive
             * interrupt level), not once per byte. */
            if (UART_FR & FR_RXFF) due = g_rx_base + wire_ticks(g_rx_k + RX_BATCH);
            if (due < next) next = due;
            break;
        }
        ring_put((uint8_t)UART_DR);
        g_rx_k++;
    }
    if (next != UINT64_MAX) alarm_at(next, now);
    else GPTM_CTL = 0;
}

void timer0a_isr(void) {
    GPTM_ICR = 1u; /* TATOCINT */
    pace_service();
}

/* Cleared before the FIFO is read, so a byte that lands after the last read interrupts again. */
void uart0_isr(void) {
    UART_ICR = 0x7FFu;
    if (!g_baud) {
        while (!(UART_FR & FR_RXFE)) ring_put((uint8_t)UART_DR);
        return;
    }
    if (!g_rx_waiting) { /* first byte since the FIFO ran empty */
        uint64_t now = now_ticks(), last = g_rx_base + wire_ticks(g_rx_k);
        if (now > last) { /* the line was idle: this byte started arriving now */
            g_rx_base = now;
            g_rx_k = 0;
        }
        g_rx_waiting = 1;
        UART_IMSC = 0; /* taken by the alarm from now on */
    }
    pace_service();
}

/* WFI with interrupts off wakes on a pending one, so none is missed between test and sleep. */
static void sleep_irq_off(uint32_t *m) {
    __asm__ volatile("wfi");
    irq_restore(*m);
    *m = irq_off();
}

/* Unpaced only (the pacing alarm is idle then): sleep until ``at`` on the alarm. */
static void wait_until(uint64_t at) {
    uint32_t m = irq_off();
    uint64_t now;
    while ((now = now_ticks()) < at) {
        alarm_at(at, now);
        sleep_irq_off(&m);
    }
    irq_restore(m);
}

static void tx_chunk(void) {
    uint32_t m = irq_off(), len = g_txlen;
    g_txlen = 0;
    while (g_tx_count == TX_CHUNKS) sleep_irq_off(&m); /* the queue drains by interrupt */
    {
        uint64_t now = now_ticks();
        uint32_t slot = (g_tx_head + g_tx_count) % TX_CHUNKS;
        uint64_t start = g_busy_until > now ? g_busy_until : now;
        g_tx_clock = (g_tx_clock > start ? g_tx_clock : start) + wire_ticks(len);
        g_txq[slot].due = g_tx_clock;
        memcpy(g_txq[slot].data, g_txbuf, len);
        g_txq[slot].len = sim_fault_link(g_txq[slot].data, len, 1);
        g_tx_count++;
        pace_service();
    }
    irq_restore(m);
}

void hal_uart_write(const uint8_t *p, size_t n) {
    uint8_t buf[TX_CHUNK];
    if (g_baud) {
        while (n--) {
            g_txbuf[g_txlen++] = *p;
            if (*p++ == 0 || g_txlen == TX_CHUNK) tx_chunk();
        }
        return;
    }
    wait_until(g_busy_until); /* unpaced: the answer still waits for the flash */
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

/* Sleeps until the last queued byte has left (an interrupt ends each wait). */
void hal_uart_flush(void) {
    uint32_t m;
    if (g_txlen) tx_chunk();
    m = irq_off();
    while (g_tx_count) sleep_irq_off(&m);
    irq_restore(m);
    while (UART_FR & FR_BUSY) {}
}

void board_sleep(void) {
    uint32_t m = irq_off();
    if (ring_tail == ring_head) sleep_irq_off(&m);
    irq_restore(m);
}

int hal_uart_set_baud(uint32_t baud) {
    /* QEMU's PL011 has no line rate (a real port programs IBRD/FBRD here): the pacing
     * takes the new rate, for bytes from the next one on. */
    uint32_t m;
    g_deaf = sim_fault_baud_fail && baud != g_base_baud;
    if (!g_base_baud || !baud) return 0; /* an unpaced link stays unpaced */
    m = irq_off();
    g_rx_base += wire_ticks(g_rx_k);
    g_rx_k = 0;
    g_baud = baud;
    irq_restore(m);
    return 0;
}

uint32_t board_baud(void) { return g_base_baud; }

void board_uart_reset(void) {
    hal_uart_flush();
    (void)hal_uart_set_baud(g_base_baud);
    g_deaf = 0;
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

#define NVIC_WDT (1u << 18)

/* The first time-out's interrupt only wakes a main loop asleep in WFI, so that it runs, and
 * feeds, at least every half period. It does not feed: it masks itself until the next feed,
 * so a loop that hangs is still reset at the second time-out, interrupts on or off. */
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
    busy(g_cfg.erase_us);
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
    busy((uint64_t)((n + g_cfg.page_size - 1u) / g_cfg.page_size) * g_cfg.program_us);
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
        else if (!strcmp(k, "--baud")) g_base_baud = g_baud = sim_parse_uint(v);
        /* --model, --turnaround-ms: fixed at build time or not modelled */
    }
}

void board_init(void) {
    unsigned i;
    for (i = 0; i < BL_MODEL_COUNT; i++)
        if (!strcmp(BL_MODELS[i].name, BL_MODEL_NAME)) g_cfg = BL_MODELS[i];
    board_parse_args();
    board_open_flash();
    g_bl.store.cfg = &g_cfg;
    SYST_RVR = TICK_PERIOD - 1u; /* the clock; its 10 ms wraps also wake WFI for the timers */
    SYST_CVR = 0;
    SYST_CSR = 7u; /* enable, interrupt, processor clock */
    SYSCTL_RCGC1 |= 1u << 16; /* GPTM 0 clock gate */
    GPTM_CTL = 0;
    GPTM_CFG = 0;  /* 32-bit timer */
    GPTM_TAMR = 1u; /* one-shot */
    GPTM_IMR = 1u;  /* time-out interrupt */
    UART_LCRH = 0x70u; /* 8N1, FIFOs on */
    UART_IMSC = IM_RX | IM_RT;
    UART_CR = 0x301u;  /* UARTEN | TXE | RXE */
    NVIC_ISER0 = (1u << 5) | NVIC_TIMER0A;
    /* Bytes may wait in the FIFO without an interrupt: an image started by the bootloader
     * inherits its UART, whose interrupt fires only when the FIFO goes from empty to one. */
    REG(0xE000E200u) = 1u << 5; /* ISPR0: run uart0_isr once */
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

