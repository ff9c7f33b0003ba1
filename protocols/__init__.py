"""Serial bootloader protocol: sans-I/O codec and client, plus the async serial transport."""
