// One task: its configuration, the summary of its runs (GET taskReports/summary, polled
// every few seconds while runs are open) and one row per device whose run has finished
// (GET taskReports/findSince with the task id, from the newest report seen).
import { useEffect, useRef, useState } from "preact/hooks";
import { describeError, formatTime } from "../components/format.js";
import { Table } from "../components/table.jsx";
import { toast } from "../components/toast.jsx";
import { COIOTE, api, segment } from "../lib/api.js";
import { Link, navigate } from "../lib/router.jsx";
import { can } from "../lib/session.js";
import { ErrorAlert } from "../components/error-alert.jsx";
import "../components/panels.css";

const FAST_POLL_MS = 2000; // while runs are open
const SLOW_POLL_MS = 15000; // group tasks reach devices that join later
const EPOCH = "1970-01-01T00:00:00Z";

const FIGURES = [
  ["totalScheduled", "Scheduled"],
  ["inProgress", "In progress"],
  ["completed", "Completed"],
  ["successes", "Succeeded"],
  ["failures", "Failed"],
  ["notCompleted", "Not completed"],
];

function Summary({ summary }) {
  return (
    <div class="summary" aria-live="polite" data-testid="task-summary">
      <dl class="stats">
        {FIGURES.map(([key, label]) => (
          <div key={key} class="stat" data-key={key}>
            <dt>{label}</dt>
            <dd>{summary ? summary[key] : "…"}</dd>
          </div>
        ))}
      </dl>
      {summary && summary.totalScheduled > 0 && (
        <div class="progress-line">
          <progress max="100" value={summary.completionRate} aria-label="Completion">
            {summary.completionRate}%
          </progress>
          <span>
            {summary.completionRate}% complete, {summary.successRate}% succeeded, {summary.failureRate}% failed
          </span>
        </div>
      )}
    </div>
  );
}

function ReportValues({ report }) {
  const values = report.properties ?? [];
  if (!values.length) return <span class="muted">none</span>;
  return (
    <ul class="plain">
      {values.map((entry, index) => (
        <li key={index}>
          <code>{entry?.name !== undefined ? `${entry.name} = ${entry.value}` : JSON.stringify(entry)}</code>
        </li>
      ))}
    </ul>
  );
}

export function TaskPage({ id }) {
  const [task, setTask] = useState(null);
  const [error, setError] = useState(null);
  const [summary, setSummary] = useState(null);
  const [reports, setReports] = useState({}); // deviceId → report
  const newest = useRef(EPOCH);
  const mayReadReports = can("GET taskReports/findSince");

  useEffect(() => {
    setTask(null);
    setSummary(null);
    setReports({});
    newest.current = EPOCH;
    api.get(`${COIOTE}/tasks/${segment(id)}`).then(setTask, (failure) => setError(describeError(failure)));
  }, [id]);

  useEffect(() => {
    if (!can("GET taskReports/summary") && !mayReadReports) return undefined;
    let timer = null;
    let stopped = false;
    const controller = new AbortController();
    const tick = async () => {
      let open = true;
      try {
        if (can("GET taskReports/summary")) {
          const next = await api.get(`${COIOTE}/taskReports/summary`, {
            query: { taskId: id },
            signal: controller.signal,
          });
          setSummary(next);
          open = next.notCompleted > 0 || next.totalScheduled === 0;
        }
        if (mayReadReports) {
          // Runs that finish in the same millisecond as the newest seen are not lost:
          // ask from a second before it and merge by device.
          const since = new Date(new Date(newest.current).getTime() - 1000).toISOString();
          const found = await api.get(`${COIOTE}/taskReports/findSince`, {
            query: { lastUpdateTime: newest.current === EPOCH ? EPOCH : since, taskId: id },
            signal: controller.signal,
          });
          if (found.length) {
            setReports((known) => {
              const merged = { ...known };
              for (const report of found) merged[report.deviceId] = report;
              return merged;
            });
            newest.current = found[found.length - 1].lastUpdateTime;
          }
        }
      } catch (failure) {
        if (stopped) return;
        setError(describeError(failure));
      }
      if (!stopped) timer = setTimeout(tick, open ? FAST_POLL_MS : SLOW_POLL_MS);
    };
    tick();
    return () => {
      stopped = true;
      controller.abort();
      clearTimeout(timer);
    };
  }, [id]);

  const remove = async () => {
    if (!window.confirm(`Delete task ${id} with its reports?`)) return;
    try {
      await api.delete(`${COIOTE}/tasks/${segment(id)}`);
      toast(`Task ${id} deleted.`);
      navigate("/tasks");
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  const properties = task?.config?.properties ?? {};
  const rows = Object.values(reports).sort((a, b) => a.deviceId.localeCompare(b.deviceId));
  const columns = [
    {
      key: "deviceId",
      label: "Device",
      render: (report) =>
        can("GET devices/{id}") ? (
          <Link href={`/devices/${segment(report.deviceId)}`}>{report.deviceId}</Link>
        ) : (
          report.deviceId
        ),
    },
    {
      key: "status",
      label: "Result",
      render: (report) => (
        <span class={`badge badge-${report.status === "Success" ? "online" : "failed"}`} data-status={report.status}>
          {report.status}
        </span>
      ),
    },
    { key: "summary", label: "Summary", render: (report) => report.summary ?? "" },
    { key: "values", label: "Values read", render: (report) => <ReportValues report={report} /> },
    { key: "finishTime", label: "Finished", render: (report) => formatTime(report.finishTime) },
  ];

  return (
    <section aria-labelledby="task-title">
      <p class="crumbs">
        <Link href="/tasks">Tasks</Link> / {id}
      </p>
      <div class="page-head">
        <h1 id="task-title">{task?.config?.taskName || id}</h1>
        {can("DELETE tasks/{id}") && task && (
          <button type="button" class="button-secondary button-danger" onClick={remove}>
            Delete task
          </button>
        )}
      </div>
      <ErrorAlert error={error} />
      {task && (
        <dl class="facts">
          <dt>Task id</dt>
          <dd class="mono">{task.id}</dd>
          <dt>Template</dt>
          <dd>{properties.templateName ?? "none"}</dd>
          <dt>Target</dt>
          <dd>{properties.target ?? ""}</dd>
          <dt>Parameters</dt>
          <dd>
            {(task.config.parameters ?? []).map((item) => `${item.name} = ${item.value}`).join(", ") || "none"}
          </dd>
          <dt>Active</dt>
          <dd>{task.config.isActive ? "yes" : "no"}</dd>
        </dl>
      )}
      <h2>Summary</h2>
      {can("GET taskReports/summary") ? (
        <Summary summary={summary} />
      ) : (
        <p class="muted">Your account may not read task summaries.</p>
      )}
      <h2>Results per device</h2>
      {mayReadReports ? (
        <Table
          caption="Finished runs of this task"
          columns={columns}
          rows={rows}
          rowKey={(report) => report.deviceId}
          empty="No device has finished yet."
        />
      ) : (
        <p class="muted">Your account may not read task reports.</p>
      )}
    </section>
  );
}
