"""The STM32 ROM system bootloader over USART (ST AN3155): codec, part table, driver."""
