// Monitoring: a device's resource over time. Samples come from
// GET deviceMonitoring/data/{id}/resourceUrl/{url} (or .../alias/{alias}), page after
// page, and are drawn with uPlot; the aggregates (min / max / average / count per
// interval, or the count of each text value) come from a named monitoring that samples
// the resource on a group (GET monitoringData/aggregates/numerical|textual/...).
// Monitoring is switched on or off for the device here when the user may.
import { useEffect, useMemo, useState } from "preact/hooks";
import { TimeChart } from "../components/chart.jsx";
import { describeError, formatNumber, formatTime, plural } from "../components/format.js";
import { Input, Select } from "../components/field.jsx";
import { useUpdateEffect } from "../components/hooks.js";
import { Table } from "../components/table.jsx";
import { toast } from "../components/toast.jsx";
import { COIOTE, api, segment } from "../lib/api.js";
import { useLiveQuery } from "../components/query.js";
import { can } from "../lib/session.js";
import { ErrorAlert } from "../components/error-alert.jsx";
import "../components/panels.css";

const RANGES = [
  { value: "15m", label: "Last 15 minutes", seconds: 900, interval: 60 },
  { value: "1h", label: "Last hour", seconds: 3600, interval: 300 },
  { value: "6h", label: "Last 6 hours", seconds: 21600, interval: 900 },
  { value: "24h", label: "Last 24 hours", seconds: 86400, interval: 3600 },
  { value: "7d", label: "Last 7 days", seconds: 604800, interval: 21600 },
  { value: "custom", label: "From … to …" },
];
const INTERVALS = [
  { value: "10", label: "10 seconds" },
  { value: "60", label: "1 minute" },
  { value: "300", label: "5 minutes" },
  { value: "900", label: "15 minutes" },
  { value: "3600", label: "1 hour" },
  { value: "21600", label: "6 hours" },
  { value: "86400", label: "1 day" },
];
const FOLLOW_MS = 10000; // "Follow live" reloads the range this often
const MAX_PAGES = 5; // at most 5 × 2048 samples in one chart
const PAGE = 2048;
const URL_PATTERN = /^\/\d+\/\d+\/\d+(\/\d+)?$/;
const SWITCH = {
  read: "GET deviceMonitoring/configuration/device/{deviceId}/enabled",
  enable: "POST deviceMonitoring/configuration/device/{deviceId}/enable",
  disable: "POST deviceMonitoring/configuration/device/{deviceId}/disable",
};
const DATA_BY_ALIAS = "GET deviceMonitoring/{data_deviceId}/alias/{alias}";

/** (start, end) in epoch ms for the query's range. */
function rangeOf(query) {
  const preset = RANGES.find((range) => range.value === query.range) ?? RANGES[1];
  if (preset.value === "custom") {
    const start = Date.parse(query.from ?? "");
    const end = query.to ? Date.parse(query.to) : Date.now();
    if (Number.isNaN(start) || Number.isNaN(end)) return null;
    return { start, end, interval: Math.max(10, Math.round((end - start) / 1000 / 60)) };
  }
  const end = Date.now();
  return { start: end - preset.seconds * 1000, end, interval: preset.interval };
}

/** "2026-12-01T04:05" for a datetime-local input. */
function localInput(ms) {
  const date = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return date.toISOString().slice(0, 16);
}

function samplesPath(device, url, alias) {
  const base = `${COIOTE}/deviceMonitoring/data/${segment(device)}`;
  return alias ? `${base}/alias/${segment(alias)}` : `${base}/resourceUrl/${url}`;
}

async function loadSamples(device, url, alias, range, signal) {
  const points = [];
  let start = new Date(range.start).toISOString();
  let page = null;
  for (let count = 0; count < MAX_PAGES; count++) {
    page = await api.get(samplesPath(device, url, alias), {
      query: { timeRangeStart: start, timeRangeEnd: new Date(range.end).toISOString(), limit: PAGE },
      signal,
    });
    points.push(...page.data);
    if (!page.hasNext || !page.lastPointTimestamp) break;
    start = page.lastPointTimestamp;
  }
  return { points, metadata: page?.metadata, truncated: Boolean(page?.hasNext) };
}

function MonitoringSwitch({ device }) {
  const [enabled, setEnabled] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  useEffect(() => {
    setEnabled(null);
    setError(null);
    if (!can(SWITCH.read)) return;
    api
      .get(`${COIOTE}/deviceMonitoring/configuration/device/${segment(device)}/enabled`)
      .then((answer) => setEnabled(answer.enabled), (failure) => setError(describeError(failure)));
  }, [device]);
  const turn = async (on) => {
    setBusy(true);
    setError(null);
    try {
      const answer = await api.post(
        `${COIOTE}/deviceMonitoring/configuration/device/${segment(device)}/${on ? "enable" : "disable"}`,
      );
      setEnabled(answer.enabled);
      toast(`Monitoring ${answer.enabled ? "on" : "off"} for ${device}.`);
    } catch (failure) {
      setError(describeError(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="switch-line" data-testid="monitoring-switch">
      <span>
        Monitoring for this device:{" "}
        <strong data-enabled={enabled === null ? "unknown" : String(enabled)}>
          {enabled === null ? (can(SWITCH.read) ? "…" : "unknown") : enabled ? "on" : "off"}
        </strong>
      </span>
      {can(SWITCH.enable) && enabled !== true && (
        <button type="button" class="button-small" disabled={busy} onClick={() => turn(true)}>
          Enable monitoring
        </button>
      )}
      {can(SWITCH.disable) && enabled !== false && (
        <button type="button" class="button-small button-secondary" disabled={busy} onClick={() => turn(false)}>
          Disable monitoring
        </button>
      )}
      {error && (
        <span class="form-error" role="alert">
          {error}
        </span>
      )}
    </div>
  );
}

function SamplesView({ samples, resource, range }) {
  const numeric = samples.points.length > 0 && samples.points.every((point) => typeof point.value === "number");
  const chart = useMemo(() => {
    if (!numeric) return null;
    const times = samples.points.map((point) => Date.parse(point.date) / 1000);
    const values = samples.points.map((point) => point.value);
    return { times, series: [{ label: resource, values }] };
  }, [samples, numeric]);
  const latest = samples.points.slice(-10).reverse();
  if (!samples.points.length) return <p class="muted">No sample in this time range.</p>;
  const last = samples.points[samples.points.length - 1];
  const low = numeric ? Math.min(...chart.series[0].values) : null;
  const high = numeric ? Math.max(...chart.series[0].values) : null;
  return (
    <>
      {numeric ? (
        <TimeChart
          title={`${resource}: ${plural(samples.points.length, "sample")}${samples.truncated ? " (the first ones of the range)" : ""}`}
          times={chart.times}
          series={chart.series}
          testId="samples-chart"
          span={chart.times[0] === chart.times[chart.times.length - 1] ? [range.start / 1000, range.end / 1000] : undefined}
          summary={`${plural(samples.points.length, "sample")} from ${formatTime(samples.points[0].date)} to ${formatTime(last.date)}, between ${formatNumber(low)} and ${formatNumber(high)}, last ${formatNumber(last.value)}`}
        />
      ) : (
        <p class="muted">Text values: shown as a table.</p>
      )}
      <Table
        caption="The newest samples"
        columns={[
          { key: "date", label: "Time", render: (point) => formatTime(point.date) },
          { key: "value", label: "Value", render: (point) => String(point.value) },
        ]}
        rows={latest}
        rowKey={(point) => `${point.date}-${point.value}`}
      />
    </>
  );
}

function Aggregates({ device, url, range, numeric }) {
  const [monitorings, setMonitorings] = useState([]);
  const [name, setName] = useState("");
  const [group, setGroup] = useState("");
  const [interval, setBucket] = useState(String(range.interval));
  const [rows, setRows] = useState(null);
  const [error, setError] = useState(null);
  const kind = numeric ? "numerical" : "textual";
  const permission = `GET monitoringData/aggregates/${kind}/{monitoringName}/{groupId}/{resourceName}`;

  useEffect(() => {
    if (!can("GET monitoring")) return;
    api.get(`${COIOTE}/monitoring`).then(
      (all) => {
        const sampling = all.filter((item) => item.resources.includes(url));
        setMonitorings(sampling);
        setName(sampling[0]?.name ?? "");
        setGroup(sampling[0]?.groupId ?? "");
      },
      (failure) => setError(describeError(failure)),
    );
  }, [device, url]);
  useUpdateEffect(() => setBucket(String(range.interval)), [range.interval]);
  useEffect(() => {
    if (!name || !group || !can(permission)) return undefined;
    const controller = new AbortController();
    setError(null);
    api
      .get(`${COIOTE}/monitoringData/aggregates/${kind}/${segment(name)}/${segment(group)}${url}`, {
        query: {
          timeRangeStart: new Date(range.start).toISOString(),
          timeRangeEnd: new Date(range.end).toISOString(),
          interval,
        },
        signal: controller.signal,
      })
      .then(setRows, (failure) => {
        if (!controller.signal.aborted) setError(describeError(failure));
      });
    return () => controller.abort();
  }, [name, group, interval, kind, range.start, range.end]);

  const chart = useMemo(() => {
    if (!numeric || !rows?.length) return null;
    return {
      times: rows.map((row) => Date.parse(row.to) / 1000),
      series: [
        { label: "min", values: rows.map((row) => row.min), color: "#1e7a3c", dash: [4, 4] },
        { label: "avg", values: rows.map((row) => row.avg), color: "#1f5fbf" },
        { label: "max", values: rows.map((row) => row.max), color: "#b3261e", dash: [4, 4] },
      ],
    };
  }, [rows, numeric]);

  if (!can("GET monitoring") || !can(permission)) {
    return <p class="muted">Your account may not read monitoring aggregates.</p>;
  }
  if (!monitorings.length) {
    return (
      <p class="muted">
        Aggregates are computed over a group by a named monitoring; none samples {url}. Create one (POST monitoring)
        with this resource to see them.
      </p>
    );
  }
  const columns = numeric
    ? [
        { key: "from", label: "From", render: (row) => formatTime(row.from) },
        { key: "to", label: "To", render: (row) => formatTime(row.to) },
        { key: "min", label: "Min", render: (row) => formatNumber(row.min) },
        { key: "max", label: "Max", render: (row) => formatNumber(row.max) },
        { key: "avg", label: "Average", render: (row) => formatNumber(row.avg) },
        { key: "count", label: "Count" },
      ]
    : [
        { key: "from", label: "From", render: (row) => formatTime(row.from) },
        { key: "to", label: "To", render: (row) => formatTime(row.to) },
        {
          key: "counts",
          label: "Values (count)",
          render: (row) => (
            <ul class="plain">
              {Object.entries(row.counts).map(([value, count]) => (
                <li key={value}>
                  <code>{value}</code>: {count}
                </li>
              ))}
            </ul>
          ),
        },
      ];
  return (
    <div data-testid="aggregates">
      <div class="form-row">
        <Select
          label="Named monitoring"
          value={name}
          onValue={(chosen) => {
            setName(chosen);
            setGroup(monitorings.find((item) => item.name === chosen)?.groupId ?? "");
          }}
          options={monitorings.map((item) => item.name)}
        />
        <Input label="Group (the monitoring's or one below it)" value={group} onValue={setGroup} spellcheck={false} />
        <Select label="Interval" value={interval} onValue={setBucket} options={INTERVALS} />
      </div>
      <ErrorAlert error={error} />
      {chart && (
        <TimeChart
          title={`${url} over group ${group}: min, average and max per interval`}
          times={chart.times}
          series={chart.series}
          height={200}
          span={[range.start / 1000, range.end / 1000]}
          testId="aggregates-chart"
          summary={`${plural(rows.length, "interval")} of ${url} over group ${group}`}
        />
      )}
      <Table
        caption={`${numeric ? "Figures" : "Value counts"} per interval over group ${group}`}
        columns={columns}
        rows={rows ?? []}
        rowKey={(row) => row.from}
        busy={rows === null && !error}
        empty="No sample in this time range."
      />
    </div>
  );
}

export function MonitoringPage() {
  const [query, go] = useLiveQuery();
  const device = query.device ?? "";
  const url = query.url ?? "";
  const alias = query.alias ?? "";
  const [draft, setDraft] = useState({ device, resource: alias || url, range: query.range ?? "1h", from: query.from ?? "", to: query.to ?? "" });
  const [samples, setSamples] = useState(null);
  const [error, setError] = useState(null);
  const [aliases, setAliases] = useState([]);
  const [reloads, setReloads] = useState(0);
  const [follow, setFollow] = useState(false);
  const range = useMemo(() => rangeOf(query), [query.range, query.from, query.to, reloads]);

  useUpdateEffect(() => {
    setDraft({ device, resource: alias || url, range: query.range ?? "1h", from: query.from ?? "", to: query.to ?? "" });
  }, [device, url, alias, query.range, query.from, query.to]);
  useEffect(() => {
    setAliases([]);
    if (!device || !can("GET deviceMonitoring/configuration/device/{deviceId}/aliases")) return;
    api
      .get(`${COIOTE}/deviceMonitoring/configuration/device/${segment(device)}/aliases`)
      .then(setAliases, () => setAliases([]));
  }, [device]);
  useEffect(() => {
    if (!follow || query.range === "custom") return undefined;
    const timer = setInterval(() => setReloads((count) => count + 1), FOLLOW_MS);
    return () => clearInterval(timer);
  }, [follow, query.range]);
  useEffect(() => {
    if (!follow) setSamples(null); // following keeps the chart while the next range loads
    setError(null);
    if (!device || !(url || alias) || !range) return undefined;
    const controller = new AbortController();
    loadSamples(device, url, alias, range, controller.signal).then(setSamples, (failure) => {
      if (controller.signal.aborted) return;
      setError(
        failure.code === 5031 ? `${describeError(failure)}. Enable monitoring to collect samples.` : describeError(failure),
      );
    });
    return () => controller.abort();
  }, [device, url, alias, range]);

  const show = (event) => {
    event.preventDefault();
    const resource = draft.resource.trim();
    const params = new URLSearchParams();
    params.set("device", draft.device.trim());
    if (URL_PATTERN.test(resource)) params.set("url", resource);
    else if (resource) params.set("alias", resource);
    params.set("range", draft.range);
    if (draft.range === "custom") {
      params.set("from", draft.from);
      if (draft.to) params.set("to", draft.to);
    }
    go(`/monitoring?${params}`);
  };

  const resourceUrl = url || samples?.metadata?.lwm2mUrl || "";
  const numeric = samples ? samples.points.every((point) => typeof point.value === "number") : true;
  const mayUseAlias = can(DATA_BY_ALIAS);
  return (
    <section aria-labelledby="monitoring-title">
      <div class="page-head">
        <h1 id="monitoring-title">Monitoring</h1>
      </div>
      <form class="panel form-grid" onSubmit={show} aria-label="What to chart">
        <Input
          label="Device id"
          value={draft.device}
          onValue={(value) => setDraft({ ...draft, device: value })}
          spellcheck={false}
          required
        />
        <Input
          label="Resource"
          value={draft.resource}
          onValue={(value) => setDraft({ ...draft, resource: value })}
          hint={mayUseAlias ? "An LwM2M URL (/3303/0/5700) or one of the device's aliases" : "An LwM2M URL, e.g. /3303/0/5700"}
          list={aliases.length ? "monitoring-aliases" : undefined}
          spellcheck={false}
          required
        />
        {aliases.length > 0 && (
          <datalist id="monitoring-aliases">
            {aliases.map((entry) => (
              <option key={entry.alias} value={entry.alias}>
                {entry.lwm2mUrl}
              </option>
            ))}
          </datalist>
        )}
        <Select
          label="Time range"
          value={draft.range}
          onValue={(value) =>
            setDraft({
              ...draft,
              range: value,
              from: draft.from || localInput(Date.now() - 3600000),
            })
          }
          options={RANGES}
        />
        {draft.range === "custom" && (
          <>
            <Input type="datetime-local" label="From" value={draft.from} onValue={(value) => setDraft({ ...draft, from: value })} required />
            <Input type="datetime-local" label="To (empty: now)" value={draft.to} onValue={(value) => setDraft({ ...draft, to: value })} />
          </>
        )}
        <div class="form-actions form-wide">
          <button type="submit">Show</button>
          {device && (url || alias) && (
            <button type="button" class="button-secondary" onClick={() => setReloads(reloads + 1)}>
              Refresh
            </button>
          )}
          {device && (url || alias) && query.range !== "custom" && (
            <Input type="checkbox" label="Follow live (every 10 s)" value={follow} onValue={setFollow} />
          )}
        </div>
      </form>
      {device && <MonitoringSwitch device={device} />}
      <ErrorAlert error={error} />
      {device && (url || alias) && !error && (
        <>
          <h2>
            {alias ? `${alias} (${resourceUrl})` : url} on {device}
          </h2>
          {samples ? <SamplesView samples={samples} resource={resourceUrl} range={range} /> : <p aria-busy="true">Loading samples…</p>}
          {samples && resourceUrl && range && (
            <>
              <h2>Aggregates</h2>
              <Aggregates device={device} url={resourceUrl} range={range} numeric={numeric} />
            </>
          )}
        </>
      )}
      {!device && <p class="muted">Choose a device and one of its resources to see its history.</p>}
    </section>
  );
}
