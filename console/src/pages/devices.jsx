// Devices: Coiote's searchCriteria (typed freely, or built from common filters), a page
// of devices from GET devices/find/details, their groups, and live online / sleeping /
// offline status from the registrations and the LwM2M event feed.
import { useEffect, useState } from "preact/hooks";
import { Input, Select } from "../components/field.jsx";
import { StatusBadge, useDeviceStatus } from "../components/status.jsx";
import { Table } from "../components/table.jsx";
import { toastError } from "../components/toast.jsx";
import { COIOTE, api } from "../lib/api.js";
import { addCondition, quote } from "../lib/criteria.js";
import { FEED_PERMISSION } from "../lib/events.js";
import { Link, navigate, useQuery } from "../lib/router.jsx";
import { can } from "../lib/session.js";
import { ErrorAlert } from "../components/error-alert.jsx";

const PAGE_SIZES = ["25", "50", "100"];
const BUILDER_FIELDS = [
  { value: "id", label: "Device id" },
  { value: "properties.endpointName", label: "Endpoint name" },
  { value: "friendlyName", label: "Friendly name" },
  { value: "manufacturer", label: "Manufacturer" },
  { value: "modelName", label: "Model" },
  { value: "serialNumber", label: "Serial number" },
  { value: "ipAddress", label: "IP address" },
  { value: "domain", label: "Domain" },
];
const BUILDER_OPERATORS = [
  { value: "contains", label: "contains" },
  { value: "startswith", label: "starts with" },
  { value: "eq", label: "is" },
  { value: "ne", label: "is not" },
];


function Builder({ criteria, onCriteria, groups }) {
  const [field, setField] = useState(BUILDER_FIELDS[0].value);
  const [operator, setOperator] = useState("contains");
  const [value, setValue] = useState("");
  const [group, setGroup] = useState("");
  const add = (event) => {
    event.preventDefault();
    if (!value.trim()) return;
    onCriteria(addCondition(criteria, `${field} ${operator} ${quote(value.trim())}`));
    setValue("");
  };
  const addGroup = (chosen) => {
    setGroup("");
    if (chosen) onCriteria(addCondition(criteria, `directGroups eq ${quote(chosen)}`));
  };
  return (
    <fieldset class="builder">
      <legend>Add a filter</legend>
      <Select label="Field" value={field} onValue={setField} options={BUILDER_FIELDS} />
      <Select label="Condition" value={operator} onValue={setOperator} options={BUILDER_OPERATORS} />
      <Input label="Value" value={value} onValue={setValue} />
      <button type="button" class="button-secondary" onClick={add}>
        Add filter
      </button>
      {groups.length > 0 && (
        <Select
          label="In group"
          value={group}
          onValue={addGroup}
          options={[{ value: "", label: "Choose a group…" }, ...groups]}
        />
      )}
    </fieldset>
  );
}

export function DevicesPage() {
  const query = useQuery();
  const criteria = query.q ?? "";
  const limit = PAGE_SIZES.includes(query.limit) ? query.limit : PAGE_SIZES[0];
  const [draft, setDraft] = useState(criteria);
  const [page, setPage] = useState({ devices: [], next: null });
  const [bookmarks, setBookmarks] = useState([null]); // bookmark of each page seen
  const [busy, setBusy] = useState(true);
  const [error, setError] = useState(null);
  const [groups, setGroups] = useState([]);
  const status = useDeviceStatus(page.devices.map((device) => device.properties?.endpointName ?? device.id));

  useEffect(() => setDraft(criteria), [criteria]);
  useEffect(() => {
    if (!can("GET groups")) return;
    api.get(`${COIOTE}/groups`).then(setGroups, toastError);
  }, []);

  const load = async (bookmark) => {
    setBusy(true);
    setError(null);
    try {
      const found = await api.get(`${COIOTE}/devices/find/details`, {
        query: { searchCriteria: criteria, limit, pageBookmark: bookmark },
      });
      setPage({ devices: found.devices, next: found.nextPageBookmark ?? null });
    } catch (failure) {
      setPage({ devices: [], next: null });
      setError(failure.describe ? failure.describe() : String(failure));
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    setBookmarks([null]);
    load(null);
  }, [criteria, limit]);

  const search = (text, size = limit) => {
    const params = new URLSearchParams();
    if (text.trim()) params.set("q", text.trim());
    if (size !== PAGE_SIZES[0]) params.set("limit", size);
    const suffix = params.toString();
    navigate(`/devices${suffix ? `?${suffix}` : ""}`);
  };
  const next = () => {
    setBookmarks([...bookmarks, page.next]);
    load(page.next);
  };
  const previous = () => {
    const earlier = bookmarks.slice(0, -1);
    setBookmarks(earlier);
    load(earlier[earlier.length - 1]);
  };

  const columns = [
    {
      key: "id",
      label: "Device",
      render: (device) => (
        <Link href={`/devices/${encodeURIComponent(device.id)}`}>{device.friendlyName || device.id}</Link>
      ),
    },
    { key: "endpoint", label: "Endpoint", render: (device) => device.properties?.endpointName ?? "" },
    {
      key: "status",
      label: "Status",
      render: (device) => <StatusBadge state={status.of(device.properties?.endpointName ?? device.id)} />,
    },
    {
      key: "groups",
      label: "Groups",
      render: (device) =>
        device.directGroups.length ? (
          <ul class="tags">
            {device.directGroups.map((group) => (
              <li key={group}>{group}</li>
            ))}
          </ul>
        ) : (
          <span class="muted">none</span>
        ),
    },
    {
      key: "model",
      label: "Model",
      render: (device) => [device.manufacturer, device.modelName].filter(Boolean).join(" · "),
    },
    {
      key: "lastContactTime",
      label: "Last contact",
      render: (device) => (device.lastContactTime ? new Date(device.lastContactTime).toLocaleString() : ""),
    },
  ];

  return (
    <section aria-labelledby="devices-title">
      <div class="page-head">
        <h1 id="devices-title">Devices</h1>
        {can(FEED_PERMISSION) && (
          <span class="live" data-state={status.live}>
            {status.live === "open" ? "Live" : "Live updates paused"}
          </span>
        )}
      </div>
      <form
        class="search"
        role="search"
        onSubmit={(event) => {
          event.preventDefault();
          search(draft);
        }}
      >
        <Input
          label="Search criteria"
          hint="Coiote searchCriteria, e.g. properties.endpointName startswith 'sensor-' and directGroups eq 'lab'"
          class="mono"
          value={draft}
          onValue={setDraft}
          spellcheck={false}
        />
        <div class="search-actions">
          <button type="submit">Search</button>
          {criteria && (
            <button type="button" class="button-secondary" onClick={() => search("")}>
              Clear
            </button>
          )}
        </div>
      </form>
      <Builder criteria={draft} onCriteria={(text) => search(text)} groups={groups} />
      <ErrorAlert error={error} />
      <Table
        caption="Devices matching the search"
        columns={columns}
        rows={page.devices}
        rowKey={(device) => device.id}
        busy={busy}
        empty="No device matches."
      />
      <div class="pager">
        <Select
          label="Per page"
          value={limit}
          onValue={(size) => search(criteria, size)}
          options={PAGE_SIZES}
        />
        <span class="muted">Page {bookmarks.length}</span>
        <button type="button" class="button-secondary" disabled={bookmarks.length < 2 || busy} onClick={previous}>
          Previous
        </button>
        <button type="button" class="button-secondary" disabled={!page.next || busy} onClick={next}>
          Next
        </button>
      </div>
    </section>
  );
}
