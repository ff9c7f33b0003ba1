/* Cortex-M3 vector table and reset handler for the LM3S6965 (QEMU lm3s6965evb). */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void Reset_Handler(void);
void uart0_isr(void);
void wdt_isr(void);
void systick_isr(void);
void timer0a_isr(void);

static void fault(void) {
    for (;;) {}
}

void Reset_Handler(void) {
    uint32_t *s = &_sidata, *d = &_sdata;
    while (d < &_edata) *d++ = *s++;
    for (d = &_sbss; d < &_ebss; d++) *d = 0;
    (void)main();
    fault();
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16 + 20])(void) = {
    (void (*)(void))(uintptr_t)&_estack, Reset_Handler, fault, fault, fault, fault, fault, 0, 0,
    0, 0, fault, fault, 0, fault, systick_isr,
    /* IRQ 0..5: GPIO A..E, UART0; 6..17: UART1, SSI, I2C, PWM, QEI, ADC; 18: watchdog;
     * 19: GPTM 0 A */
    fault, fault, fault, fault, fault, uart0_isr, fault, fault, fault, fault, fault, fault,
    fault, fault, fault, fault, fault, fault, wdt_isr, timer0a_isr,
};
