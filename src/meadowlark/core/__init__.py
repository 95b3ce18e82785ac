"""Domain services shared by both REST surfaces: identity, users, domains, roles, audit."""
