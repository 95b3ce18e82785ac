"""Command line: serve, database, users, tokens, diagnostics."""
