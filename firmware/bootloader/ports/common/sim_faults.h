/* The Python simulator's --fault specs for the C ports (test instrumentation, never in a
 * real bootloader): link noise, power cuts by image offset / flash op / phase, refuse,
 * mute, crash-on-boot, hang-on-boot, baud-fail. */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include <stddef.h>
#include <stdint.h>

#include "bl.h"

/* Provided by the port: report and stop (power cut: exit status 3; bad option: 2). */
void port_power_cut(const char *what, uint32_t n);
void port_fail(const char *msg, const char *detail);

/* Parse one spec; calls port_fail on a bad one. */
void sim_fault_parse(const char *spec);
/* Apply rx (towards the MCU) or tx link faults in place; returns the new length. */
size_t sim_fault_link(uint8_t *p, size_t n, int tx);
/* Count one flash operation; returns 1 if power is cut now (the port tears the write). */
int sim_fault_flash_op(void);
/* The phase the last flash operation belonged to ("power-on (boot decision)", "data", ...). */
const char *sim_fault_phase(void);
/* 1 if the running app's version crashes on boot, 2 if it hangs (hang-on-boot). */
int sim_fault_crashes(const char *version);
extern int sim_fault_baud_fail;
extern unsigned sim_fault_delay_ms;
/* Decimal helpers without libc's strtod (the Cortex-M build has no heap). */
uint32_t sim_parse_uint(const char *s);
double sim_parse_decimal(const char *s, const char **end);

#endif
