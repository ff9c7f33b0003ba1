"""A local Azure Device Update service for the emulator, driven by the official SDK.

``signer`` holds its test root and signing keys; the REST API, import, groups,
device classes and deployments live beside it.
"""
