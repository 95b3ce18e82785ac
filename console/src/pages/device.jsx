// A device: details, its object tree (names from the object model, values from the
// cache), read / write / execute / observe per resource, live updates and the protocol
// log from the LwM2M event feed.
import { useEffect, useMemo, useState } from "preact/hooks";
import { ObjectTree } from "../components/object-tree.jsx";
import { StatusBadge, useDeviceStatus } from "../components/status.jsx";
import { toastError } from "../components/toast.jsx";
import { COIOTE, LWM2M, api, segment } from "../lib/api.js";
import { endpointOf, subscribe } from "../lib/events.js";
import { nodeText, nodeValues, objectTree } from "../lib/lwm2m.js";
import { Link } from "../lib/router.jsx";
import { can } from "../lib/session.js";

const LOG_SIZE = 100;
let logSequence = 0;

function describeEvent(kind, data) {
  switch (kind) {
    case "NOTIFICATION":
      return data.kind === "single"
        ? `${data.res} = ${nodeText(data.val)}`
        : `${(data.paths ?? []).join(", ")}`;
    case "SEND":
      return Object.keys(data.val ?? {}).join(", ");
    case "REQUEST_RESPONSE":
      return data.success
        ? `${data.operation} ok${data.content ? `: ${nodeText(data.content) || "…"}` : ""}`
        : `${data.operation} failed: ${data.code ?? ""} ${data.errormessage ?? ""}`;
    case "REGISTRATION":
    case "UPDATED":
      return `${data.address ?? ""} lifetime ${data.lifetime ?? "?"} s`;
    case "DEREGISTRATION":
      return data.expired ? "registration expired" : "deregistered";
    default:
      return data.reason ?? data.operation ?? "";
  }
}

/** Values that a live event carries: { "/o/i/r": text }. */
function eventValues(kind, data) {
  if (kind === "NOTIFICATION" && data.kind === "single") return nodeValues(data.res, data.val);
  if ((kind === "NOTIFICATION" || kind === "SEND") && data.val) {
    const found = {};
    for (const [path, node] of Object.entries(data.val)) Object.assign(found, nodeValues(path, node));
    return found;
  }
  return {};
}

const DEFINITIONS = "GET instantiatedResources/dataModelDefinition/{deviceId}";
const RESOURCES = "GET instantiatedResources/resourcesData/{deviceId}";

/** The object links of the device's registration; none when it is offline or unreadable. */
async function registrationLinks(endpoint) {
  if (!can("lwm2m:GET /api/lwm2m/v1/clients/{ep}")) return [];
  try {
    return (await api.get(`${LWM2M}/clients/${segment(endpoint)}`)).objectLinks ?? [];
  } catch {
    return [];
  }
}

export function DevicePage({ id }) {
  const [device, setDevice] = useState(null);
  const [tree, setTree] = useState(null);
  const [values, setValues] = useState({}); // live and freshly read values by path
  const [changed, setChanged] = useState({}); // path -> counter, to flash updated values
  const [log, setLog] = useState([]);
  const [error, setError] = useState(null);
  const endpoint = device ? (device.properties?.endpointName ?? device.id) : null;
  const status = useDeviceStatus(endpoint ? [endpoint] : []);

  const applyValues = (found) => {
    if (Object.keys(found).length === 0) return;
    setValues((current) => ({ ...current, ...found }));
    setChanged((current) => {
      const next = { ...current };
      for (const path of Object.keys(found)) next[path] = (next[path] ?? 0) + 1;
      return next;
    });
  };

  useEffect(() => {
    let cancelled = false;
    setDevice(null);
    setTree(null);
    setError(null);
    setValues({});
    setLog([]);
    const load = async () => {
      let found;
      try {
        found = await api.get(`${COIOTE}/devices/${segment(id)}`);
      } catch (failure) {
        if (!cancelled) setError(failure.describe());
        return;
      }
      if (cancelled) return;
      setDevice(found);
      if (!can(DEFINITIONS) || !can(RESOURCES)) {
        setTree([]);
        return;
      }
      const base = `${COIOTE}/instantiatedResources`;
      try {
        const [definitions, resources, links] = await Promise.all([
          api.get(`${base}/dataModelDefinition/${segment(id)}`),
          api.get(`${base}/resourcesData/${segment(id)}`),
          registrationLinks(found.properties?.endpointName ?? found.id),
        ]);
        if (!cancelled) setTree(objectTree(definitions, resources, links));
      } catch (failure) {
        if (!cancelled) setTree([]);
        toastError(failure);
      }
    };
    load();
    return () => {
      cancelled = true;
    };
  }, [id]);

  const addLog = (kind, text, failed) =>
    setLog((entries) => [{ seq: ++logSequence, at: new Date(), kind, text, failed }, ...entries].slice(0, LOG_SIZE));

  useEffect(() => {
    if (!endpoint) return undefined;
    return subscribe((kind, data) => {
      if (endpointOf(data) !== endpoint) return;
      applyValues(eventValues(kind, data));
      addLog(kind, describeEvent(kind, data), data.success === false);
    });
  }, [endpoint]);

  const objects = useMemo(() => tree ?? [], [tree]);

  if (error) {
    return (
      <section>
        <h1>Device {id}</h1>
        <p class="form-error" role="alert">
          {error}
        </p>
        <Link href="/devices">Back to the devices</Link>
      </section>
    );
  }
  if (!device) return <p aria-busy="true">Loading…</p>;
  return (
    <section aria-labelledby="device-title">
      <p class="crumbs">
        <Link href="/devices">Devices</Link> / {device.id}
      </p>
      <div class="page-head">
        <h1 id="device-title">{device.friendlyName || device.id}</h1>
        <StatusBadge state={status.of(endpoint)} />
      </div>
      <dl class="facts">
        <dt>Endpoint</dt>
        <dd>{endpoint}</dd>
        <dt>Domain</dt>
        <dd>{device.domain}</dd>
        <dt>Groups</dt>
        <dd>{device.directGroups.join(", ") || "none"}</dd>
        <dt>Model</dt>
        <dd>{[device.manufacturer, device.modelName].filter(Boolean).join(" · ") || "unknown"}</dd>
        <dt>Firmware</dt>
        <dd>{device.softwareVersion ?? "unknown"}</dd>
        <dt>IP address</dt>
        <dd>{device.ipAddress ?? "unknown"}</dd>
      </dl>
      <div class="device-layout">
        <div>
          <h2>Objects</h2>
          {tree === null ? (
            <p aria-busy="true">Loading the object tree…</p>
          ) : (
            <ObjectTree
              endpoint={endpoint}
              objects={objects}
              values={values}
              changed={changed}
              onValues={applyValues}
              onLog={addLog}
            />
          )}
        </div>
        <aside aria-labelledby="log-title">
          <h2 id="log-title">Recent events</h2>
          {log.length === 0 ? (
            <p class="muted">
              This device's events (registrations, notifications, sleeping and waking) and the
              operations you send it appear here as they happen.
            </p>
          ) : (
            <ol class="log" aria-live="off">
              {log.map((entry) => (
                <li key={entry.seq} class={entry.failed ? "failed" : undefined}>
                  <time dateTime={entry.at.toISOString()}>{entry.at.toLocaleTimeString()}</time>
                  <span class="kind">{entry.kind}</span>
                  <span>{entry.text}</span>
                </li>
              ))}
            </ol>
          )}
        </aside>
      </div>
    </section>
  );
}
