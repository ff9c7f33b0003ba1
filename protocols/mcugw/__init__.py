"""This project's own bootloader protocol (docs/protocol.md), as a driver.

The codec, client and session still live at the top of :mod:`protocols`; this
package adapts them to the driver seam (:mod:`protocols.driver`).
"""
