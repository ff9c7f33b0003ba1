/* HAL a port implements for the reference bootloader (see README.md for the guarantees). */
#ifndef BL_HAL_H
#define BL_HAL_H

#include <stddef.h>
#include <stdint.h>

/* UART transmit: queue or send n bytes; may block. */
void hal_uart_write(const uint8_t *p, size_t n);
/* Block until the last queued byte has left the UART (before a reset or a rate switch). */
void hal_uart_flush(void);
/* Switch the UART rate (after hal_uart_flush); 0 on success. */
int hal_uart_set_baud(uint32_t baud);

/* Flash, addresses relative to the start of slot 0 (layout in README.md).
 * erase: addr is sector-aligned; program: addr and n are multiples of write_size
 * and the target was erased (bits only go 1 -> 0); read: any range.
 * Each returns 0 on success, non-zero on a flash error. */
int hal_flash_erase(uint32_t addr);
int hal_flash_program(uint32_t addr, const uint8_t *p, uint32_t n);
int hal_flash_read(uint32_t addr, uint8_t *p, uint32_t n);

/* Independent watchdog (see README.md, "Watchdog"). start: arm it so that the part resets
 * unless fed within timeout_ms; once armed it cannot be stopped except by the reset it
 * causes, and start while armed only feeds it. feed: restart the count; harmless when not
 * armed. The core arms it right before it starts a TRIAL image, and feeds it during long
 * operations (every sector erase, every 4 KiB hashed) and in bl_tick. */
void hal_watchdog_start(uint32_t timeout_ms);
void hal_watchdog_feed(void);

/* Unique id bytes (at most max); returns the count (0 allowed). */
size_t hal_uid(uint8_t *out, size_t max);

/* Free-running millisecond clock (wraps at 2^32). */
uint32_t hal_millis(void);

/* Optional port hook for instrumentation and fault injection (a weak no-op is fine).
 * ev is a BL_EV_* value; for BL_EV_REQUEST a return of 1 drops the request and 2
 * answers it REFUSED. */
struct bl;
int hal_hook(struct bl *bl, int ev, uint32_t a, uint32_t b);

#endif
