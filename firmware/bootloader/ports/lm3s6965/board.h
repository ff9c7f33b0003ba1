/* LM3S6965 board support under QEMU (hal.c), shared by the bootloader and the example app. */
#ifndef BOARD_H
#define BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "bl.h"

#define REG(a) (*(volatile uint32_t *)(a))

/* Memory map of the application region (vmcu-l0 build; 0 size: no real images). The
 * bootloader's own RAM ends at APP_LOAD; an image is linked to run at APP_LOAD and keeps its
 * data and stack below HANDOFF. */
#define RAM_BASE 0x20000000u
#define APP_LOAD 0x20008000u   /* the image's vector table, linked here */
#define APP_REGION 0x00006000u /* 24 KiB of image */
#define APP_RAM_END 0x2000FFF0u
/* Bootloader <-> application, in RAM no reset clears (a system reset keeps SRAM). */
typedef struct {
    uint32_t magic; /* HANDOFF_MAGIC: the fields are valid */
    uint32_t slot;  /* the slot the running image came from */
    uint32_t trial; /* it was started on trial */
    uint32_t stay;  /* HANDOFF_MAGIC: the app asked for RESET(STAY) */
} handoff_t;
#define HANDOFF ((volatile handoff_t *)APP_RAM_END)
#define HANDOFF_MAGIC 0x48414E44u

extern bl_t g_bl;
extern bl_config_t g_cfg;
extern int g_deaf;
extern const char *app_version;

/* Model geometry, command line, flash file, UART (interrupt ring) and SysTick. */
void board_init(void);
uint32_t rx_take(uint8_t *out, uint32_t max);
/* Sleep (WFI) until an interrupt, unless received bytes are waiting. */
void board_sleep(void);
/* The --baud the link starts at (0: unpaced), and back to it after a reset of the core. */
uint32_t board_baud(void);
void board_uart_reset(void);
/* Text on the host's stderr through semihosting (debug console). */
void semi_err(const char *s);
void semi_exit(int code);
/* Reset the part (SYSRESETREQ): the bootloader runs again, SRAM is kept. */
void board_reset(void) __attribute__((noreturn));

#endif
