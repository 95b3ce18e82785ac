// Live device status: online, sleeping (queue mode, not awake) or offline (no
// registration), from GET /api/lwm2m/v1/clients and then the event feed.
import { useEffect, useState } from "preact/hooks";
import { LWM2M, api } from "../lib/api.js";
import { endpointOf, subscribe, useFeedState } from "../lib/events.js";
import { can } from "../lib/session.js";

const LABELS = { online: "Online", sleeping: "Sleeping", offline: "Offline", unknown: "Unknown" };
const CLIENTS_PERMISSION = "lwm2m:GET /api/lwm2m/v1/clients";

export function StatusBadge({ state }) {
  return (
    <span class={`badge badge-${state}`} data-status={state}>
      {LABELS[state]}
    </span>
  );
}

const NEXT_STATE = {
  REGISTRATION: (data) => (data.sleeping ? "sleeping" : "online"),
  UPDATED: (data) => (data.sleeping ? "sleeping" : "online"),
  AWAKE: () => "online",
  SLEEPING: () => "sleeping",
  DEREGISTRATION: () => "offline",
};

/** { of(endpoint) -> state, live } kept current by the feed. */
export function useDeviceStatus() {
  const [states, setStates] = useState(null); // null until the registrations are loaded
  const live = useFeedState();
  useEffect(() => {
    if (!can(CLIENTS_PERMISSION)) return undefined;
    let cancelled = false;
    const unsubscribe = subscribe((kind, data) => {
      const next = NEXT_STATE[kind];
      const endpoint = endpointOf(data);
      if (next && endpoint) setStates((known) => ({ ...(known ?? {}), [endpoint]: next(data) }));
    });
    api.get(`${LWM2M}/clients`).then(
      (registrations) => {
        if (cancelled) return;
        const loaded = {};
        for (const registration of registrations) {
          loaded[registration.endpoint] = registration.sleeping ? "sleeping" : "online";
        }
        setStates((known) => ({ ...loaded, ...(known ?? {}) }));
      },
      () => setStates({}),
    );
    return () => {
      cancelled = true;
      unsubscribe();
    };
  }, []);
  return {
    live,
    of: (endpoint) => (states === null || !endpoint ? "unknown" : (states[endpoint] ?? "offline")),
  };
}
