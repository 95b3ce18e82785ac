// Tasks: the tasks of the user's domains (GET tasks, then GET tasks/{id} for the newest),
// and a form that creates a task from a template on a device or a group
// (POST tasksFromTemplates/device/{id} | group/{groupId}); the new task's page then shows
// its summary filling in.
import { useEffect, useState } from "preact/hooks";
import { describeError } from "../components/format.js";
import { Input, Select } from "../components/field.jsx";
import { FormFooter } from "../components/form-footer.jsx";
import { useSubmit } from "../components/hooks.js";
import { Table } from "../components/table.jsx";
import { toast, toastError } from "../components/toast.jsx";
import { COIOTE, api, segment } from "../lib/api.js";
import { Link, navigate, useQuery } from "../lib/router.jsx";
import { can } from "../lib/session.js";
import { ErrorAlert } from "../components/error-alert.jsx";
import "../components/panels.css";

const SHOWN = 50; // details are fetched for the newest tasks only
const ON_DEVICE = "POST tasksFromTemplates/device/{id}";
const ON_GROUP = "POST tasksFromTemplates/group/{groupId}";

/** "device:sensor-1" → { kind: "device", id: "sensor-1" } */
function targetOf(task) {
  const text = task.config?.properties?.target ?? "";
  const colon = text.indexOf(":");
  return colon < 0 ? { kind: "", id: text } : { kind: text.slice(0, colon), id: text.slice(colon + 1) };
}

/** `initialDevice` comes from /tasks?device=ID (a link from a device's page). */
function NewTaskForm({ templates, groups, initialDevice }) {
  const kinds = [
    can(ON_DEVICE) && { value: "device", label: "A device" },
    can(ON_GROUP) && { value: "group", label: "A group" },
  ].filter(Boolean);
  const [chosenTemplate, setTemplateName] = useState("");
  const [kind, setKind] = useState(kinds.some((item) => item.value === "device") ? "device" : kinds[0]?.value);
  const [device, setDevice] = useState(initialDevice ?? "");
  const [chosenGroup, setGroup] = useState("");
  const [taskName, setTaskName] = useState("");
  const [values, setValues] = useState({});
  const [rerun, setRerun] = useState(false);
  // Until the user picks one, the first template and group (they load after the form).
  const templateName = chosenTemplate || templates[0]?.name || "";
  const group = chosenGroup || groups[0] || "";
  const template = templates.find((item) => item.name === templateName);

  const { busy, error, submit } = useSubmit(async () => {
    const target = kind === "device" ? device.trim() : group;
    if (!target) throw new Error(kind === "device" ? "Enter the device id." : "Choose a group.");
    const parameters = (template?.parameters ?? []).map((parameter) => ({
      name: parameter.name,
      value: values[parameter.name] ?? parameter.default ?? "",
    }));
    const taskId = await api.post(`${COIOTE}/tasksFromTemplates/${kind}/${segment(target)}`, {
      query: { rerunIfExists: rerun ? "true" : undefined },
      json: { templateName, config: { taskName: taskName.trim() || undefined, parameters } },
    });
    toast(`Task ${taskId} created.`);
    navigate(`/tasks/${segment(taskId)}`);
  });

  return (
    <form class="panel form-grid" onSubmit={submit} aria-labelledby="new-task-title">
      <h2 id="new-task-title">New task from a template</h2>
      <Select
        label="Template"
        value={templateName}
        onValue={(name) => {
          setTemplateName(name);
          setValues({});
        }}
        options={templates.map((item) => ({ value: item.name, label: item.name }))}
        hint={template?.description}
      />
      <Select label="Run on" value={kind} onValue={setKind} options={kinds} />
      {kind === "device" ? (
        <Input label="Device id" value={device} onValue={setDevice} spellcheck={false} required />
      ) : groups.length ? (
        <Select label="Group" value={group} onValue={setGroup} options={groups} />
      ) : (
        <p class="muted">No group to choose from.</p>
      )}
      <Input label="Task name (optional)" value={taskName} onValue={setTaskName} />
      {(template?.parameters ?? []).map((parameter) => (
        <Input
          key={parameter.name}
          label={`Parameter ${parameter.name}`}
          value={values[parameter.name] ?? parameter.default ?? ""}
          onValue={(value) => setValues({ ...values, [parameter.name]: value })}
          hint={parameter.name === "key" ? "An LwM2M path, e.g. /3/0/0 or Device.0.Manufacturer" : undefined}
          spellcheck={false}
          required={parameter.default === undefined}
        />
      ))}
      <Input type="checkbox" label="Run again if it already exists" value={rerun} onValue={setRerun} />
      <FormFooter error={error} disabled={busy || !templateName}>
        {busy ? "Creating…" : "Create task"}
      </FormFooter>
    </form>
  );
}

export function TasksPage() {
  const query = useQuery();
  const [tasks, setTasks] = useState([]);
  const [total, setTotal] = useState(0);
  const [busy, setBusy] = useState(true);
  const [error, setError] = useState(null);
  const [templates, setTemplates] = useState([]);
  const [groups, setGroups] = useState([]);
  const mayCreate = (can(ON_DEVICE) || can(ON_GROUP)) && can("GET tasksFromTemplates/templates");

  useEffect(() => {
    let cancelled = false;
    (async () => {
      try {
        const ids = await api.get(`${COIOTE}/tasks`);
        const newest = ids.slice(-SHOWN).reverse();
        const details = can("GET tasks/{id}")
          ? await Promise.all(
              newest.map((id) => api.get(`${COIOTE}/tasks/${segment(id)}`).catch(() => ({ id, config: {} }))),
            )
          : newest.map((id) => ({ id, config: {} }));
        if (cancelled) return;
        setTotal(ids.length);
        setTasks(details);
      } catch (failure) {
        if (!cancelled) setError(describeError(failure));
      } finally {
        if (!cancelled) setBusy(false);
      }
    })();
    if (mayCreate) api.get(`${COIOTE}/tasksFromTemplates/templates`).then(setTemplates, toastError);
    if (mayCreate && can(ON_GROUP) && can("GET groups")) api.get(`${COIOTE}/groups`).then(setGroups, toastError);
    return () => {
      cancelled = true;
    };
  }, []);

  const columns = [
    {
      key: "id",
      label: "Task",
      render: (task) => (
        <Link href={`/tasks/${segment(task.id)}`}>{task.config?.taskName || task.id}</Link>
      ),
    },
    { key: "template", label: "Template", render: (task) => task.config?.properties?.templateName ?? "" },
    {
      key: "target",
      label: "Target",
      render: (task) => {
        const target = targetOf(task);
        return target.kind ? `${target.kind} ${target.id}` : "";
      },
    },
    {
      key: "active",
      label: "Active",
      render: (task) => (task.config?.isActive === false ? "no" : task.config?.isActive ? "yes" : ""),
    },
  ];

  return (
    <section aria-labelledby="tasks-title">
      <div class="page-head">
        <h1 id="tasks-title">Tasks</h1>
        {total > SHOWN && <span class="muted">the newest {SHOWN} of {total}</span>}
      </div>
      {mayCreate && <NewTaskForm templates={templates} groups={groups} initialDevice={query.device} />}
      <ErrorAlert error={error} />
      <Table
        caption="Tasks of your domains, newest first"
        columns={columns}
        rows={tasks}
        rowKey={(task) => task.id}
        busy={busy}
        empty="No task yet."
      />
    </section>
  );
}
