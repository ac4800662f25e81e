"""ratebridge's operator CLI and local tools: the Genesys emulator, the local
event-source runner, local servers, simulations and benchmarks.

Imports go one way: ratebridge_tools -> processor -> limiter.
"""

import processor as _processor  # noqa: F401 - quiets the Genesys SDK's import (see processor)
