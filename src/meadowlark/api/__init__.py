"""REST surfaces: Coiote DM v3, Monogoto console, authentication and administration."""
