"""Connectivity: SIM cards ("Things") with their lifecycle, joined to the LwM2M devices
that use them (the Monogoto console's view of the same system)."""
