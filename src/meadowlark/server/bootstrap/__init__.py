"""The LwM2M Bootstrap server: accounts to provision and the session that does it."""
