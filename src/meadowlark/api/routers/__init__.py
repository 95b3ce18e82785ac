"""REST routers: the Coiote DM v3 and Monogoto surfaces, auth, admin and the web console."""
