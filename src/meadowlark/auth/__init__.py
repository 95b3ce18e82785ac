"""Identity and access: password hashing, tokens, the permission catalog, TOTP, throttling."""
