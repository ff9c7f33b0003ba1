"""Device Update's documented limits and throttles, each with its source.

Standard SKU values from "Azure Device Update for IoT Hub limits"
(learn.microsoft.com/azure/iot-hub-device-update/device-update-limits; the limits
table is the include device-update-for-iot-hub-limits.md, the throttles table is in
the article itself). Import manifest rules from "Importing updates into Device Update
for IoT Hub: schema" (import-schema.md). docs/adu.md lists them for operators.
"""

from __future__ import annotations

import re

# --- device-update-limits: "Operation" table, Standard SKU ---
MAX_UPDATES = 100  # "Total number of updates per instance"
MAX_VERSIONS_PER_NAME = 100  # "Number of update versions per update provider and name"
MAX_PROVIDERS = 25  # "Number of update providers per instance"
MAX_NAMES_PER_PROVIDER = 25  # "Number of update names per provider per instance"
MAX_DEPLOYMENTS = 100  # "Total number of deployments per instance" (not deleted)
MAX_ACTIVE_DEPLOYMENTS = 50  # "Number of active deployments per instance"
MAX_GROUPS = 100  # "Number of device groups per instance"
MAX_DEVICE_CLASSES = 80  # "Number of device classes per instance"
MAX_FILES = 10  # "Maximum number of files in a single update"
MAX_FILE_BYTES = 2 * 1024**3  # "Maximum single update file size"

# --- device-update-limits: "Throttling limits" table (per instance) ---
DEPLOYMENT_WRITES_PER_MINUTE = 6  # CreateOrUpdateDeployment, DeleteDeployment: 6/min
LIST_OPERATIONS_PER_MINUTE = 50  # List Operation Statuses: 50/min
#: "the number of concurrent asynchronous import and delete operations is limited to 10"
MAX_CONCURRENT_IMPORTS = 10

# --- import-schema.md ---
MANIFEST_VERSION = "5.0"  # "Import manifest schema version. Must be 5.0."
MAX_STEPS = 10  # instructions.steps: array[1-10]
MAX_COMPAT_SETS = 10  # compatibility: array[1-10]
MAX_COMPAT_PROPERTIES = 5  # compatibilityInfo: 1-5 properties
MAX_COMPAT_NAME = 32  # property name length 1-32
MAX_COMPAT_VALUE = 64  # property value length 1-64
MAX_DESCRIPTION = 512  # description: 1-512 characters
UPDATE_ID_PART = re.compile(r"[a-zA-Z0-9.-]{1,64}")  # provider and name: ^[a-zA-Z0-9.-]+$, <= 64
#: version: "Two to four part dot separated numerical version numbers", each 0..2147483647
VERSION = re.compile(r"\d+(?:\.\d+){1,3}")
MAX_VERSION_PART = 2147483647
HANDLER = re.compile(r"\S+/\S+:\d{1,5}")  # handler: ^\S+/\S+:\d{1,5}$, length 5-32
HANDLER_LENGTH = (5, 32)
MAX_FILENAME = 255  # file.filename: 1-255
