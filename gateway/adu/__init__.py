"""Azure Device Update (ADU) for IoT Hub: the agent contract per MCU identity.

``jws`` and ``rootkeys`` verify what ADU sends (the signature chain of
``deviceUpdate.service``), ``manifest`` reads the signed update manifest,
``contract`` builds the ``deviceUpdate`` component's reported values, ``codes`` maps
the project's failure codes to ADU result codes, and ``agent`` runs it for one MCU.
Everything but ``agent`` is sans-I/O.
"""
