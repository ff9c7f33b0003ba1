"""Mutants of the §10 safety rules, each of which a test must catch (issue 18).

Applies one mutant at a time to the C core or to the Python model, runs the tests that
guard that rule (tests/simulators/test_boot_musts.py for that implementation, plus the C
cut enumeration), restores the source, and prints CAUGHT or SURVIVED per mutant. From the
repository root: ``.venv/bin/python firmware/bootloader/tools/mutants.py [all|c|py]``.
It edits sources in place (restored in a ``finally``): never run it on a tree being edited.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SRC = "firmware/bootloader/src/"

#: (what the mutant breaks, file, original text, mutated text)
Mutant = tuple[str, str, str, str]

C_MUTANTS: list[Mutant] = [
    ("C: TRIAL slot booted without its hash check", SRC + "bl_boot.c",
     "            bl_image_ok(bl, (unsigned)trial, t, NULL) &&\n", ""),
    ("C: CONFIRMED slot booted without its hash check", SRC + "bl_boot.c",
     "(!check_image || bl_image_ok(bl, (unsigned)s, &st[s], NULL))", "1"),
    ("C: no limit on trial attempts", SRC + "bl_boot.c",
     "t->boots < bl->cfg->max_trial_boots && ", ""),
    ("C: trial boot without a BOOT record", SRC + "bl_boot.c",
     "bl_trailer_append(bl, (unsigned)trial, BL_REC_BOOT, 0, 0, 0) == 0", "1"),
    ("C: a torn position is not an attempt", SRC + "bl_trailer.c",
     "            if (st->state == BL_TRIAL && st->boots < 255u) st->boots++;\n"
     "            continue;", "            continue;"),
    ("C: a full TRIAL trailer stays TRIAL", SRC + "bl_trailer.c",
     "    if (st->state == BL_TRIAL && st->free == 0) st->state = BL_INVALID;", ""),
    ("C: BEGIN while a trial is pending", SRC + "bl_cmd.c",
     "if (bl_slot_find(&bl->store, BL_TRIAL, BL_TRIAL) >= 0) {", "if (0) {"),
    ("C: BEGIN into the fallback slot", SRC + "bl_cmd.c",
     "slot = fb < 0 ? 0u : 1u - (unsigned)fb;", "slot = fb < 0 ? 0u : (unsigned)fb;"),
    ("C: fallback chosen by trailer alone", SRC + "bl_cmd.c",
     "fb = bl_boot_fallback(&bl->store, 1);", "fb = bl_boot_fallback(&bl->store, 0);"),
    ("C: CHECKPOINT before its bytes are programmed", SRC + "bl_sink.c",
     "    status = bl_image_write(bl, s->expected, p, n); /* raw: transfer offset = image"
     " offset */\n    if (status != BL_OK) return status;\n    s->expected += n;",
     "    {\n        uint32_t at = s->expected;\n        s->expected += n;\n"
     "        boundary = s->expected - s->expected % s->interval;\n"
     "        if (boundary > s->checkpoint && boundary < s->size) {\n"
     "            (void)bl_trailer_append(&bl->store, s->slot, BL_REC_CHECKPOINT, boundary,"
     " 0, 0);\n            s->checkpoint = boundary;\n        }\n"
     "        status = bl_image_write(bl, at, p, n);\n"
     "        if (status != BL_OK) return status;\n    }"),
    ("C: trial image started without the watchdog", SRC + "bl_boot.c",
     "            if (bl->cfg->watchdog_ms) hal_watchdog_start(bl->cfg->watchdog_ms);\n", ""),
    ("C: generation not advanced by ACTIVATE", SRC + "bl_cmd.c",
     "gen = 1 + (st.generation > other.generation ? st.generation : other.generation);",
     "gen = 1;"),
    ("C: VERIFY failure leaves the slot as it was", SRC + "bl_cmd.c",
     "bl_slot_drop(&bl->store, (unsigned)target) ? BL_FLASH_ERROR : BL_VERIFY_FAILED);",
     "BL_VERIFY_FAILED);"),
]  # fmt: skip

PY_MUTANTS: list[Mutant] = [
    ("Python: TRIAL slot booted without its hash check", "simulators/mcu/boot.py",
     " and image_ok(trailers[i], st):", ":"),
    ("Python: CONFIRMED slot booted without its hash check", "simulators/mcu/boot.py",
     "        if image_ok(trailers[i], statuses[i]):\n"
     "            return BootChoice(slot=i, trial=False",
     "        if True:\n            return BootChoice(slot=i, trial=False"),
    ("Python: no limit on trial attempts", "simulators/mcu/boot.py",
     "if st.boots < limit and ", "if "),
    ("Python: trial boot without a BOOT record", "simulators/mcu/boot.py",
     "            trailers[i].append(RecordKind.BOOT)\n", ""),
    ("Python: a hanging trial is never reset", "simulators/mcu/core.py",
     "        if trial:\n            self._at(now + self.opts.watchdog_s, self._crash)\n", ""),
    ("Python: CHECKPOINT before its bytes are programmed", "simulators/mcu/core.py",
     "        work += self.flash.program(base + offset, padded)\n"
     "        boundary = end - end % s.interval\n"
     "        if boundary > s.checkpoint and boundary < s.size:\n"
     "            # A checkpoint only saves re-sending; it never eats into the records the\n"
     "            # rest of the update needs (torn ones included).\n"
     "            if self.trailers[s.slot].status().free > self._tail_reserve() + 1:\n"
     "                work += self.trailers[s.slot].append(RecordKind.CHECKPOINT, boundary)\n"
     "            s.checkpoint = boundary\n",
     "        boundary = end - end % s.interval\n"
     "        if boundary > s.checkpoint and boundary < s.size:\n"
     "            if self.trailers[s.slot].status().free > self._tail_reserve() + 1:\n"
     "                work += self.trailers[s.slot].append(RecordKind.CHECKPOINT, boundary)\n"
     "            s.checkpoint = boundary\n"
     "        work += self.flash.program(base + offset, padded)\n"),
]  # fmt: skip

C_TESTS = [
    "tests/simulators/test_boot_musts.py",
    "tests/simulators/test_mcu_powercut_impls.py::test_c_core_survives_a_cut_at_every_flash_op",
    "tests/simulators/test_mcu_watchdog.py",
    "-k", "c] or vmcu- or qemu] or watchdog_is_armed",
]  # fmt: skip
PY_TESTS = ["tests/simulators/test_boot_musts.py", "tests/simulators/test_mcu_watchdog.py",
            "-k", "python]"]  # fmt: skip


def run(mutant: Mutant, tests: list[str]) -> bool:
    """True if the tests caught the mutant."""
    label, path, old, new = mutant
    source = ROOT / path
    original = source.read_text()
    if original.count(old) != 1:
        raise SystemExit(f"{label}: the text to mutate is not in {path} exactly once")
    source.write_text(original.replace(old, new))
    try:
        cmd = [str(ROOT / ".venv/bin/pytest"), "-n", "0", "-q", "-p", "no:cacheprovider", *tests]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        source.write_text(original)
    lines = proc.stdout.strip().splitlines()
    failed = [ln.split("::")[-1] for ln in lines if ln.startswith("FAILED")]
    verdict = "CAUGHT" if proc.returncode == 1 and failed else "SURVIVED"
    print(f"{label}: {verdict} ({lines[-1] if lines else proc.stderr[-200:]}) {failed[:3]}")
    return verdict == "CAUGHT"


def main() -> int:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    caught = [run(m, C_TESTS) for m in C_MUTANTS if which in ("all", "c")]
    caught += [run(m, PY_TESTS) for m in PY_MUTANTS if which in ("all", "py")]
    return 0 if all(caught) else 1


if __name__ == "__main__":
    sys.exit(main())
