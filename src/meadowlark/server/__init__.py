"""LwM2M server logic: registrations, downlink requests, observations, queue mode, bootstrap."""
