"""ratebridge's operator CLI and local tools: the Genesys emulator, the local
event-source runner, local servers, simulations and benchmarks.

Imports go one way: ratebridge_tools -> processor -> limiter.
"""
