"""The Genesys Cloud client: one shared OAuth token, every request rate-limited.

`processor.genesys.client.GenesysClient` (imports the SDK: seconds) is the
entry point; errors are in `processor.genesys.errors` (cheap to import).
"""
