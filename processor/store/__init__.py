"""Where processed records go: the interactions and presence tables (PynamoDB models)."""
