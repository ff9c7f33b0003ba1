#!/bin/sh
# Set-up step of `make test` (and of .ci/run): Python >= 3.11 with venv, and the Debian
# packages the suite runs (C compilers, QEMU, headless Chromium). Whatever is missing is
# installed with apt-get, as root or through sudo; where that cannot happen it stops at
# once with one line naming what to install, instead of a suite that fails 6 minutes in.
#
# Environment: PYTHON (default python3), the interpreter the virtual environment uses.
set -u
PYTHON=${PYTHON:-python3}
me="make test"

fail() {
    echo "$me: $*" >&2
    exit 1
}

# Python first: no package manager fixes a too-old default interpreter for us.
command -v "$PYTHON" >/dev/null 2>&1 ||
    fail "needs Python >= 3.11: install python3 (Debian/Ubuntu: apt-get install python3 python3-venv) or set PYTHON="
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    found=$("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null)
    [ -n "$found" ] || found="of unknown version"
    fail "needs Python >= 3.11, $PYTHON is $found: install python3.11 or newer and run make test PYTHON=python3.11"
fi

# What each tool needs from Debian/Ubuntu; a tool counts as present only if it works.
missing_packages() {
    command -v make >/dev/null 2>&1 || printf ' make'
    command -v cc >/dev/null 2>&1 || printf ' gcc libc6-dev'
    # The Cortex-M3 build needs newlib's headers and libc as well as the compiler.
    printf '#include <string.h>\nint main(void) { return 0; }\n' |
        arm-none-eabi-gcc -x c -fsyntax-only - >/dev/null 2>&1 ||
        printf ' gcc-arm-none-eabi libnewlib-arm-none-eabi'
    command -v qemu-system-arm >/dev/null 2>&1 || printf ' qemu-system-arm'
    # The STM32 simulator is also driven by stm32flash, the tool its users run.
    command -v stm32flash >/dev/null 2>&1 || printf ' stm32flash'
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
        printf ' chromium fonts-liberation'
    # venv without ensurepip makes a virtual environment with no pip in it.
    "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 ||
        printf ' python3-venv'
}

missing=$(missing_packages)
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    as_root="sudo -n"
else
    fail "missing Debian packages; install them with: sudo apt-get install -y$missing"
fi
command -v apt-get >/dev/null 2>&1 ||
    fail "missing packages (Debian names):$missing; this machine has no apt-get, install their equivalents"

echo "$me: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
log=${TMPDIR:-/tmp}/mcu-gateway-apt.log
# Chromium comes with its recommended packages (fonts, GL drivers), as on the machines
# where the screenshot test was written; everything else without.
plain=$(printf '%s\n' $missing | grep -v -x -e chromium -e fonts-liberation | tr '\n' ' ')
browser=$(printf '%s\n' $missing | grep -x -e chromium -e fonts-liberation | tr '\n' ' ')
{
    $as_root apt-get update -qq &&
        { [ -z "${plain% }" ] || $as_root apt-get install -y -qq --no-install-recommends $plain; } &&
        { [ -z "${browser% }" ] || $as_root apt-get install -y -qq $browser; }
} >"$log" 2>&1 || fail "apt-get install$missing failed (log: $log)"

still=$(missing_packages)
[ -z "$still" ] || fail "still missing after apt-get:$still"
exit 0
