"""Several worker processes and nodes as one deployment: signalling between nodes
(PostgreSQL LISTEN/NOTIFY, Redis pub/sub, or Unix-domain sockets on one host),
registration ownership in the store, downlink routing, event relay, cache invalidation
and singleton leases. It sits above ``server/``, ``core/`` and ``store/``; the runtime
wires it in."""
