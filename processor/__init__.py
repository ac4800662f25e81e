"""The SQS-triggered Lambda: Genesys events in, enriched records out (see README.md).

Importing `processor` makes sure the Genesys SDK, whenever something imports
it, starts no config-file watcher (`processor.genesys.sdk_config`).
"""

from processor.genesys.sdk_config import install as _quiet_sdk_import

_quiet_sdk_import()
