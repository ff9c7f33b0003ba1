"""Run the C reference bootloader (firmware/bootloader) instead of the Python virtual MCU.

``mcu-gateway sim --pty --impl c`` compiles the Linux port with the system C
compiler, ``--impl qemu`` cross-compiles the Cortex-M3 port and boots it in
``qemu-system-arm``. Builds are cached by a hash of the sources (so an edit
rebuilds) and the simulator process *becomes* the C program or QEMU (exec), so a
SIGKILL of the ``sim`` process is a power cut of the part, exactly as with the
Python simulator. The first stdout line stays ``PTY <path>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import tty
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from simulators.mcu.models import MODELS

#: The C sources live in the repository, not in the wheel.
SOURCE_DIR = Path(__file__).resolve().parents[2] / "firmware" / "bootloader"
IMPLS = ("python", "c", "qemu")
#: The protocol core: what every port links (the Makefile's CORE).
CORE = (
    "src/bl_frame.c",
    "src/bl_cmd.c",
    "src/bl_window.c",
    "src/bl_sink.c",
    "src/bl_boot.c",
    "src/bl_config.c",
    "src/bl_trailer.c",
    "src/bl_sha256.c",
    "src/bl_dec.c",
    "src/bl_dec_lzma.c",
    "src/bl_dec_inflate.c",
)
#: Both simulated ports build the §17 stream decoders in (firmware/bootloader/include/bl_dec.h).
DECODERS = ("-DBL_WITH_COMPRESS=1", "-DBL_WITH_DELTA=1")
_CORE = (*CORE, "ports/common/sim_app.c", "ports/common/sim_faults.c")
INC = ("-Iinclude", "-Isrc", "-Iports/common")

#: Host builds under AddressSanitizer and UBSan: any overrun or UB aborts the program.
SANITIZE = ("-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all")
#: Set to 1 to build `sim --impl c` with SANITIZE (the tests do; slower, same behaviour).
SANITIZE_ENV = "MCU_GATEWAY_C_SANITIZE"
_ARM_FLAGS = (
    "-std=c99", "-Os", "-mcpu=cortex-m3", "-mthumb", "-ffunction-sections",
    "-fdata-sections", "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-nostartfiles",
    "-Wl,--gc-sections", "-Tports/lm3s6965/link.ld",
)  # fmt: skip
#: RAM sizing of the Cortex-M build per model: (max_data, window, write_size).
QEMU_MODELS = {
    "vmcu-l0": (256, 1024, 4),
    "vmcu-f4": (1024, 8192, 8),
    "vmcu-h7": (2048, 16384, 32),
}


class NativeSimError(RuntimeError):
    """The C build could not be made or started; the message says what to install or fix."""


def cache_root() -> Path:
    base = os.environ.get("MCU_GATEWAY_CACHE") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "mcu-gateway" / "bootloader"


def _sources(patterns: Iterable[str]) -> list[Path]:
    if not SOURCE_DIR.is_dir():
        raise NativeSimError(
            f"C bootloader sources not found at {SOURCE_DIR}: --impl c/qemu runs from a "
            "source checkout (firmware/bootloader is not part of the wheel)"
        )
    files: set[Path] = set()
    for pattern in patterns:
        files.update(p for p in SOURCE_DIR.glob(pattern) if p.is_file())
    return sorted(files)


def _digest(files: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for f in files:
        h.update(str(f.relative_to(SOURCE_DIR)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _compile(cmd: list[str], out: Path) -> Path:
    """Build into a temp name and rename, so concurrent builds never see half a binary."""
    if out.exists():
        return out
    if shutil.which(cmd[0]) is None:
        raise NativeSimError(f"{cmd[0]} not found: install it (see .ci/run) to use this --impl")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(fd)
    try:
        proc = subprocess.run(
            [*cmd, "-o", tmp], cwd=SOURCE_DIR, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise NativeSimError(f"building {out.name} failed:\n{proc.stderr.strip()}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def build_host(decoders: bool = True) -> Path:
    """The Linux port, built with the system C compiler (cached); ``decoders=False``
    builds it without the §17 decoders (protocol v1: no COMPRESS, DELTA or THUMB)."""
    files = _sources(["include/*.h", "src/*", "ports/common/*", "ports/host/*"])
    cc = os.environ.get("CC", "cc")
    sanitize = os.environ.get(SANITIZE_ENV) == "1"
    flags = ["-std=c99", *(SANITIZE if sanitize else ("-O2",)), "-Wall", "-Wextra", "-Werror"]
    flags += [*INC, *(DECODERS if decoders else ())]
    out = cache_root() / f"host-{_digest(files, ' '.join([cc, *flags]))}" / "bl-host"
    return _compile([cc, *flags, *_CORE, "ports/host/host.c"], out)


def build_cutdev() -> Path:
    """The core as a power-cut test device (ports/host/cutdev.c), under ASan and UBSan (cached)."""
    files = _sources(["include/*.h", "src/*", "ports/common/sim_app.*", "ports/host/cutdev.c"])
    cc = os.environ.get("CC", "cc")
    flags = ["-std=c99", *SANITIZE, "-Wall", "-Wextra", "-Werror", *INC]
    out = cache_root() / f"cutdev-{_digest(files, ' '.join([cc, *flags]))}" / "bl-cutdev"
    sources = [*CORE, "ports/common/sim_app.c", "ports/host/cutdev.c"]
    return _compile([cc, *flags, *sources], out)


def build_qemu(model: str, decoders: bool = True) -> Path:
    """The Cortex-M3 (lm3s6965) port for one model's buffer sizes (cached)."""
    if model not in QEMU_MODELS:
        raise NativeSimError(
            f"--impl qemu builds {', '.join(QEMU_MODELS)} (RAM of the emulated part); not {model}"
        )
    max_data, window, write = QEMU_MODELS[model]
    files = _sources(["include/*.h", "src/*", "ports/common/*", "ports/lm3s6965/*"])
    defs = [
        f"-DBL_MAX_DATA_MAX={max_data}u", f"-DBL_WINDOW_MAX={window}u",
        f"-DBL_WRITE_MAX={write}u", f"-DBL_WRITE_MIN={write}u", f'-DBL_MODEL_NAME="{model}"',
        *(DECODERS if decoders else ()),
    ]  # fmt: skip
    if model == EXAMPLE_MODEL:  # keeps 32 KiB of RAM, boots real images in the rest (board.h)
        defs += ["-DBOARD_APP_REGION=0x6000u", "-Wl,--defsym=__stack_top=0x20008000"]
    out = cache_root() / f"qemu-{_digest(files, ' '.join(defs))}" / f"bl-{model}.elf"
    sources = [*_CORE, *sorted(str(p.relative_to(SOURCE_DIR)) for p in files if p.suffix == ".c"
                                and p.parent.name == "lm3s6965")]  # fmt: skip
    cmd = ["arm-none-eabi-gcc", *_ARM_FLAGS, *INC, *defs, *sources, "-lc", "-lgcc"]
    return _compile(cmd, out)


#: The board the example application is built for (firmware/bootloader/example).
EXAMPLE_MODEL = "vmcu-l0"
EXAMPLE_FAULTS = {"": [], "hang": ["-DAPP_FAULT=1"], "hardfault": ["-DAPP_FAULT=2"]}


def build_example(version: str, fault: str = "") -> Path:
    """The example application as a raw image (`make example` without the packaging), cached."""
    if fault not in EXAMPLE_FAULTS:
        raise NativeSimError(f"unknown FAULT {fault!r}; choose hang or hardfault")
    max_data, window, write = QEMU_MODELS[EXAMPLE_MODEL]
    files = _sources(["include/*.h", "src/*", "ports/common/sim_faults.*", "ports/lm3s6965/*",
                      "example/*"])  # fmt: skip
    defs = [
        f"-DBL_MAX_DATA_MAX={max_data}u", f"-DBL_WINDOW_MAX={window}u",
        f"-DBL_WRITE_MAX={write}u", f"-DBL_WRITE_MIN={write}u",
        f'-DBL_MODEL_NAME="{EXAMPLE_MODEL}"', f'-DAPP_VERSION="{version}"',
        *EXAMPLE_FAULTS[fault],
    ]  # fmt: skip
    flags = [f if not f.startswith("-T") else "-Texample/link.ld" for f in _ARM_FLAGS]
    name = f"example-{version}{'-' + fault if fault else ''}"
    out = cache_root() / f"example-{_digest(files, ' '.join(defs))}" / f"{name}.elf"
    sources = [*CORE, "ports/common/sim_faults.c", "ports/lm3s6965/hal.c",
               "ports/lm3s6965/startup.c", "example/app.c"]  # fmt: skip
    elf = _compile(["arm-none-eabi-gcc", *flags, *INC, "-Iports/lm3s6965", *defs, *sources,
                    "-lc", "-lgcc"], out)  # fmt: skip
    image = elf.with_suffix(".bin")
    if not image.exists():
        tmp = image.with_name(f".{image.name}.{os.getpid()}")
        proc = subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), str(tmp)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise NativeSimError(f"objcopy of {elf.name} failed: {proc.stderr.strip()}")
        os.replace(tmp, image)
    return image


def _state_dir(opts: Mapping[str, Any]) -> Path:
    state = opts.get("state")
    path = Path(state) if state else Path(tempfile.mkdtemp(prefix="mcu-sim-"))
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def _common_args(opts: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    for key in ("model", "uid", "turnaround_ms", "protocol_version"):
        if opts.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", str(opts[key])]
    args += ["--baud", str(opts.get("baud", 115200))]
    # "--no-app": an empty value would vanish from QEMU's semihosting command line.
    app = opts.get("app_version")
    args += ["--app-version", str(app)] if app else ["--no-app"]
    args += ["--flash-scale", str(opts.get("flash_scale", 1.0))]
    for spec in opts.get("fault") or ():
        args += ["--fault", spec]
    return args


def exec_native(impl: str, opts: Mapping[str, Any]) -> int:
    """Replace this process with the C build; returns only on an error (raised)."""
    if (opts.get("count") or 1) != 1:
        raise NativeSimError(f"--impl {impl} serves one MCU per process; drop --count")
    state = _state_dir(opts)
    if impl == "c":
        binary = build_host(decoders=not opts.get("no_decoders"))
        argv = [str(binary), "--state", str(state), *_common_args(opts)]
        if opts.get("link"):
            argv += ["--link", str(opts["link"])]
        sys.stdout.flush()
        os.execv(binary, argv)
    if impl == "qemu":
        return _exec_qemu(state, opts)
    raise NativeSimError(f"unknown --impl {impl!r}; choose one of {', '.join(IMPLS)}")


def _identity(state: Path, opts: Mapping[str, Any]) -> tuple[str, str]:
    """(model, uid hex) from device.json, created the way the Python simulator does."""
    ident = state / "device.json"
    if not ident.exists():
        model = str(opts.get("model") or "vmcu-l0")
        uid = str(opts.get("uid") or secrets.token_hex(12))
        ident.write_text(json.dumps({"model": model, "uid": uid}) + "\n")
        return model, uid
    try:
        stored = json.loads(ident.read_text())
        model, uid = str(stored["model"]), str(stored["uid"])
    except (OSError, ValueError, KeyError) as exc:
        raise NativeSimError(f"{ident}: unreadable identity file: {exc}") from exc
    if opts.get("model") and opts["model"] != model:
        raise NativeSimError(
            f"{state} holds a {model} MCU, not {opts['model']}; use another --state directory"
        )
    if opts.get("uid") and str(opts["uid"]).lower() != uid.lower():
        raise NativeSimError(f"{state} holds MCU uid {uid}, not {opts['uid']}")
    return model, uid


def _blank_flash(path: Path, size: int) -> None:
    """A blank part, before the PTY line (as the Python simulator does), so the file exists."""
    if not path.exists() or path.stat().st_size != size:
        path.write_bytes(b"\xff" * size)


def _exec_qemu(state: Path, opts: Mapping[str, Any]) -> NoReturn:
    """Boot the Cortex-M build with its UART on a pty we own and flash in state/flash.bin.

    QEMU's serial port is its stdio, wired to the master side of a fresh pty; the
    slave's path is announced and the slave fd stays open in QEMU, so the port never
    reads EIO between clients. Semihosting gives the guest the host flash file.
    """
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise NativeSimError("qemu-system-arm not found: install it (see .ci/run)")
    if opts.get("model") and opts["model"] not in QEMU_MODELS:
        build_qemu(str(opts["model"]))  # raises the clear error before anything is written
    model, uid = _identity(state, opts)
    elf = build_qemu(model, decoders=not opts.get("no_decoders"))
    _blank_flash(state / "flash.bin", MODELS[model].flash_size)
    guest_args = ["bl", *_common_args({**opts, "model": model, "uid": uid})]
    if any(" " in a or "," in a for a in guest_args):
        raise NativeSimError("--impl qemu: options may not contain spaces or commas")
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    if opts.get("link"):
        link = Path(opts["link"])
        tmp = link.with_name(f".{link.name}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path)
        tmp.replace(link)
    # The guest's messages (a power cut) go to our stderr, never into the UART's pty.
    semi = ",".join(
        ["enable=on", "target=native", "chardev=semi", *(f"arg={a}" for a in guest_args)]
    )
    argv = [
        qemu, "-M", "lm3s6965evb", "-nodefaults", "-display", "none", "-monitor", "none",
        "-chardev", "stdio,id=uart,signal=off", "-serial", "chardev:uart",
        "-chardev", "file,id=semi,path=/dev/stderr",
        "-semihosting-config", semi, "-kernel", str(elf),
    ]  # fmt: skip
    print(f"PTY {path}", flush=True)
    os.chdir(state)
    os.set_inheritable(slave, True)
    os.dup2(master, 0)
    os.dup2(master, 1)
    os.close(master)
    os.execv(qemu, argv)


def prebuild() -> list[Path]:
    """Build the variants tests and CI start most (cached), so that no simulator's start-up
    deadline is spent waiting on a compiler on a loaded machine."""
    built = [build_host(), build_host(decoders=False), build_cutdev()]
    built += [build_qemu(m) for m in QEMU_MODELS]
    built.append(build_qemu("vmcu-f4", decoders=False))
    return built


if __name__ == "__main__":
    for path in prebuild():
        print(path)
