// Things (SIM cards) on the console API: a page of Things (GET /things, 50 at most, with
// filters), their connection status (GET /thing/status) and usage counters (ActualUsage).
// The console's routes take the same bearer token as the rest of the API.
import { useEffect, useState } from "preact/hooks";
import { describeError, formatBytes } from "../components/format.js";
import { Input, Select } from "../components/field.jsx";
import { Table } from "../components/table.jsx";
import { useLiveQuery } from "../components/query.js";
import { Link } from "../lib/router.jsx";
import { api, segment } from "../lib/api.js";
import { can } from "../lib/session.js";
import { ConnectionBadge, ThingState, smsCount } from "../components/thing-badges.jsx";
import { ErrorAlert } from "../components/error-alert.jsx";
import "../components/panels.css";

const PAGE = 50;
const STATES = ["", "PROVISIONED", "TEST_ACTIVE", "ACTIVE", "SUSPENDED", "RETIRED"];
const FILTERS = [
  { value: "ICCID", label: "ICCID" },
  { value: "ThingName", label: "Name" },
  { value: "IMEI", label: "IMEI" },
  { value: "ThingId", label: "Thing id" },
];

export function ThingsPage() {
  const [query, go] = useLiveQuery();
  const offset = Math.max(Number.parseInt(query.offset ?? "0", 10) || 0, 0);
  const [things, setThings] = useState([]);
  const [status, setStatus] = useState({});
  const [busy, setBusy] = useState(true);
  const [error, setError] = useState(null);
  const [field, setField] = useState(query.field ?? "ICCID");
  const [value, setValue] = useState(query.value ?? "");
  const [state, setState] = useState(query.state ?? "");

  useEffect(() => {
    let cancelled = false;
    setBusy(true);
    setError(null);
    const filters = {};
    if (query.state) filters["filterBy[State]"] = query.state;
    if (query.field && query.value) filters[`filterBy[${query.field}]`] = query.value;
    (async () => {
      try {
        const page = await api.get("/things", {
          query: { limit: PAGE, offset, "sortBy[DateCreated]": "DESC", ...filters },
        });
        if (cancelled) return;
        setThings(page);
        if (page.length && can("console:GET /thing/status")) {
          const answer = await api.get("/thing/status", {
            query: { ThingIds: page.map((thing) => thing.ThingId).join(","), limit: PAGE },
          });
          if (!cancelled) setStatus(Object.fromEntries(answer.Data.map((item) => [item.ThingId, item.ConnectionStatus])));
        }
      } catch (failure) {
        if (!cancelled) setError(describeError(failure));
      } finally {
        if (!cancelled) setBusy(false);
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [offset, query.state, query.field, query.value]);

  const show = (next) => {
    const params = new URLSearchParams();
    if (next.state) params.set("state", next.state);
    if (next.value) {
      params.set("field", next.field);
      params.set("value", next.value);
    }
    if (next.offset) params.set("offset", String(next.offset));
    const text = params.toString();
    go(`/things${text ? `?${text}` : ""}`);
  };
  const search = (event) => {
    event.preventDefault();
    show({ state, field, value: value.trim(), offset: 0 });
  };

  const columns = [
    {
      key: "ThingName",
      label: "Thing",
      render: (thing) =>
        can("console:GET /thing/{ThingId}") ? (
          <Link href={`/things/${segment(thing.ThingId)}`}>{thing.ThingName || thing.ThingId}</Link>
        ) : (
          thing.ThingName || thing.ThingId
        ),
    },
    { key: "ICCID", label: "ICCID", render: (thing) => <span class="mono">{thing.ExternalUniqueId}</span> },
    { key: "State", label: "State", render: (thing) => <ThingState state={thing.State} /> },
    { key: "status", label: "Connection", render: (thing) => <ConnectionBadge status={status[thing.ThingId]} /> },
    { key: "data", label: "Data", render: (thing) => formatBytes(thing.ActualUsage?.Data_) },
    { key: "sms", label: "SMS", render: (thing) => smsCount(thing) },
    {
      key: "device",
      label: "Device",
      render: (thing) =>
        !thing.DeviceEndpoint ? (
          <span class="muted">not linked</span>
        ) : can("GET devices/{id}") ? (
          <Link href={`/devices/${segment(thing.DeviceEndpoint)}`}>{thing.DeviceEndpoint}</Link>
        ) : (
          thing.DeviceEndpoint
        ),
    },
  ];

  return (
    <section aria-labelledby="things-title">
      <div class="page-head">
        <h1 id="things-title">Things</h1>
        <span class="muted">SIM cards</span>
      </div>
      <form class="panel form-row" role="search" onSubmit={search}>
        <Select label="State" value={state} onValue={setState} options={STATES.map((item) => ({ value: item, label: item || "Any state" }))} />
        <Select label="Field" value={field} onValue={setField} options={FILTERS} />
        <Input label="Is exactly" value={value} onValue={setValue} spellcheck={false} />
        <button type="submit">Filter</button>
      </form>
      <ErrorAlert error={error} />
      <Table
        caption="Things, newest first"
        columns={columns}
        rows={things}
        rowKey={(thing) => thing.ThingId}
        busy={busy}
        empty="No Thing matches."
      />
      <div class="pager">
        <span class="muted">
          {things.length ? `${offset + 1}–${offset + things.length}` : ""}
        </span>
        <button type="button" class="button-secondary" disabled={offset === 0 || busy} onClick={() => show({ ...query, offset: Math.max(offset - PAGE, 0) })}>
          Previous
        </button>
        <button type="button" class="button-secondary" disabled={things.length < PAGE || busy} onClick={() => show({ ...query, offset: offset + PAGE })}>
          Next
        </button>
      </div>
    </section>
  );
}
