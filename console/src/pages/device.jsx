// A device: its details and its object tree (see object-tree.jsx).
import { useEffect, useState } from "preact/hooks";
import { StatusBadge, useDeviceStatus } from "../components/status.jsx";
import { COIOTE, api, segment } from "../lib/api.js";
import { Link } from "../lib/router.jsx";

export function DevicePage({ id }) {
  const [device, setDevice] = useState(null);
  const [error, setError] = useState(null);
  const status = useDeviceStatus();

  useEffect(() => {
    setDevice(null);
    api.get(`${COIOTE}/devices/${segment(id)}`).then(setDevice, (failure) => setError(failure.describe()));
  }, [id]);

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
  const endpoint = device.properties?.endpointName ?? device.id;
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
        <dt>Manufacturer</dt>
        <dd>{device.manufacturer ?? ""}</dd>
        <dt>Model</dt>
        <dd>{device.modelName ?? ""}</dd>
        <dt>IP address</dt>
        <dd>{device.ipAddress ?? ""}</dd>
      </dl>
    </section>
  );
}
