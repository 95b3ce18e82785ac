// Live device status: online, sleeping (queue mode, not awake) or offline (no
// registration), from GET /api/lwm2m/v1/clients/{ep} and then the event feed.
import { useEffect, useState } from "preact/hooks";
import { LWM2M, api, segment } from "../lib/api.js";
import { endpointOf, subscribe, useFeedState } from "../lib/events.js";
import { can } from "../lib/session.js";

const LABELS = { online: "Online", sleeping: "Sleeping", offline: "Offline", unknown: "Unknown" };
const CLIENT_PERMISSION = "lwm2m:GET /api/lwm2m/v1/clients/{ep}";

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

const PARALLEL = 6;

/** Each endpoint's state from its registration (404: not registered, offline). */
async function loadStates(endpoints) {
  const loaded = {};
  const queue = [...endpoints];
  const worker = async () => {
    while (queue.length) {
      const endpoint = queue.shift();
      try {
        const registration = await api.get(`${LWM2M}/clients/${segment(endpoint)}`);
        loaded[endpoint] = registration.sleeping ? "sleeping" : "online";
      } catch (failure) {
        loaded[endpoint] = failure.status === 404 ? "offline" : "unknown";
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, endpoints.length) }, worker));
  return loaded;
}

/**
 * { of(endpoint) -> state, live } for the given endpoints (the devices on screen: one
 * registration lookup each, so a page of 25 costs 25 small reads whatever the fleet's
 * size), kept current by the event feed.
 */
export function useDeviceStatus(endpoints) {
  const [states, setStates] = useState({});
  const live = useFeedState();
  const key = endpoints.join("\n");
  useEffect(() => {
    if (!can(CLIENT_PERMISSION)) return undefined;
    let cancelled = false;
    const heard = {};
    const unsubscribe = subscribe((kind, data) => {
      const next = NEXT_STATE[kind];
      const endpoint = endpointOf(data);
      if (!next || !endpoint) return;
      heard[endpoint] = next(data);
      setStates((known) => ({ ...known, [endpoint]: heard[endpoint] }));
    });
    loadStates(endpoints).then((loaded) => {
      // What the feed said while loading is newer than the lookups.
      if (!cancelled) setStates((known) => ({ ...known, ...loaded, ...heard }));
    });
    return () => {
      cancelled = true;
      unsubscribe();
    };
  }, [key]);
  return { live, of: (endpoint) => (endpoint ? (states[endpoint] ?? "unknown") : "unknown") };
}
