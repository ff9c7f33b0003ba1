"""Firmware packages: manifest, signatures, policy, download and cache.

Public API (no Azure, no gateway imports; errors all derive from
``firmware.errors.FirmwareError`` and carry a ``firmware.reasons.ReasonCode``):

* ``firmware.twin.parse_desired(raw, allowed_schemes=...) -> DesiredFirmware``
  validates ``properties.desired.firmware``; raises ``DesiredFirmwareError``
  with ``reason`` and ``field``.
* ``firmware.download.Downloader(cache_dir, max_cache_bytes, ca_file=, allow_http=)``:
  ``async with dl.fetch(url, sha256, max_size=, deadline_s=, progress=) as path``.
* ``firmware.policy.evaluate(data, desired=, target=, policy=) -> Verdict`` for the
  twin flow; ``firmware.policy.check_package(data, target=, policy=,
  allow_downgrade=) -> Verdict`` for ``mcu-gateway flash``.
* ``firmware.compat.TargetInfo(compat, model, installed_version, slot_size)``,
  ``firmware.policy.TrustPolicy.from_files(paths, allow_unsigned=, max_size=)``.
* ``firmware.package.build / parse / verify`` and ``firmware.keys`` for tools.

The binary format is specified in ``docs/package.md``.
"""
