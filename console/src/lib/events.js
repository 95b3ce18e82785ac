// One shared connection to the LwM2M event feed (GET /api/lwm2m/v1/events, SSE) for
// every page that listens: registrations, updates, sleeping/awake, notifications and
// request/response records. Opened with the first listener, closed after the last.
import { useEffect, useState } from "preact/hooks";
import { LWM2M, followEvents, onSessionChange } from "./api.js";
import { can } from "./session.js";

export const FEED_PERMISSION = "lwm2m:GET /api/lwm2m/v1/events";

const listeners = new Set();
const stateListeners = new Set();
let controller = null;
let state = "closed";

function setState(next) {
  state = next;
  stateListeners.forEach((listener) => listener(state));
}

function open() {
  controller = new AbortController();
  const current = controller;
  followEvents(
    `${LWM2M}/events`,
    {},
    (kind, data) => listeners.forEach((listener) => listener(kind, data)),
    { signal: current.signal, onStatus: setState },
  ).catch(() => setState("closed"));
}

// A revoked or expired session must not keep a stream open.
onSessionChange((active) => {
  if (!active && controller) {
    controller.abort();
    controller = null;
    listeners.clear();
    setState("closed");
  }
});

/** Hear every event (kind, data) of the caller's devices; returns the unsubscribe. */
export function subscribe(listener) {
  if (!can(FEED_PERMISSION)) return () => {};
  listeners.add(listener);
  if (!controller) open();
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0 && controller) {
      controller.abort();
      controller = null;
      setState("closed");
    }
  };
}

/** "open" while the feed is connected, else "closed". */
export function useFeedState() {
  const [current, setCurrent] = useState(state);
  useEffect(() => {
    stateListeners.add(setCurrent);
    setCurrent(state);
    return () => stateListeners.delete(setCurrent);
  }, []);
  return current;
}

/** The endpoint name an event is about. */
export const endpointOf = (data) => data?.ep ?? data?.endpoint;
