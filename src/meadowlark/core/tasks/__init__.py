"""Tasks: operations described once and carried out on devices when they are reachable."""
