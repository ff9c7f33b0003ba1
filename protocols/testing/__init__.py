"""Test support for driver authors: the driver contract (:mod:`.contract`)."""
