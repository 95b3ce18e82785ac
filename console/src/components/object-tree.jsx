// The object tree of a device: objects (collapsible) > instances > resources, each
// resource with the buttons its operations and the user's permissions allow.
import { useState } from "preact/hooks";
import { LWM2M, api, segment } from "../lib/api.js";
import { PERMISSIONS, bounds, enumeration, formValue, nodeValues, writeValue } from "../lib/lwm2m.js";
import { can } from "../lib/session.js";
import { Field, Input, Select } from "./field.jsx";
import { toast, toastError } from "./toast.jsx";
import { ErrorAlert } from "./error-alert.jsx";

/** Security, Server and Access Control: configuration, folded until opened. */
const COLLAPSED = new Set([0, 1, 2]);

const resourceUrl = (endpoint, path) => `${LWM2M}/clients/${segment(endpoint)}${path}`;

function WriteForm({ endpoint, resource, current, onDone, onValues, onLog }) {
  const [raw, setRaw] = useState(formValue(resource.type, current));
  const [encoding, setEncoding] = useState("hex");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState(null);
  const choices = enumeration(resource.range);
  const label = `New value of ${resource.name}`;

  const submit = async (event) => {
    event.preventDefault();
    let value;
    try {
      value = writeValue(resource.type, raw, encoding);
    } catch (invalid) {
      setProblem(invalid.message);
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      const answer = await api.put(resourceUrl(endpoint, resource.path), {
        json: { id: resource.id, kind: "singleResource", value },
        query: resource.type === "Opaque" ? { opaque: encoding } : undefined,
      });
      onLog("WRITE", `${resource.path} = ${value} ${answer.status}`, false);
      onValues({ [resource.path]: String(value) });
      toast(`Wrote ${resource.name} (${resource.path}).`);
      onDone();
    } catch (failure) {
      onLog("WRITE", `${resource.path} ${failure.message}`, true);
      setProblem(failure.describe());
    } finally {
      setBusy(false);
    }
  };

  let control;
  if (resource.type === "Boolean") {
    control = <Input type="checkbox" label={label} value={raw} onValue={setRaw} />;
  } else if (choices) {
    control = <Select label={label} value={raw} onValue={setRaw} options={choices} />;
  } else if (resource.type === "Integer" || resource.type === "UnsignedInteger" || resource.type === "Float") {
    const { min, max } = bounds(resource.range);
    control = (
      <Input
        type="number"
        label={label}
        step={resource.type === "Float" ? "any" : "1"}
        min={min ?? (resource.type === "UnsignedInteger" ? "0" : undefined)}
        max={max}
        hint={[resource.range, resource.units].filter(Boolean).join(" ") || undefined}
        value={raw}
        onValue={setRaw}
        required
      />
    );
  } else if (resource.type === "Time") {
    control = <Input type="datetime-local" step="1" label={label} hint="Your local time" value={raw} onValue={setRaw} required />;
  } else if (resource.type === "Opaque") {
    control = (
      <>
        <Input label={label} class="mono" value={raw} onValue={setRaw} spellcheck={false} />
        <Select
          label="Encoding"
          value={encoding}
          onValue={setEncoding}
          options={[
            { value: "hex", label: "Hex" },
            { value: "base64", label: "Base64" },
          ]}
        />
      </>
    );
  } else {
    control = (
      <Input
        label={label}
        hint={resource.type === "Objlnk" ? "object:instance, e.g. 3:0" : undefined}
        value={raw}
        onValue={setRaw}
      />
    );
  }

  return (
    <form class="write-form" onSubmit={submit} aria-label={`Write ${resource.name}`}>
      {control}
      <button type="submit" disabled={busy}>
        {busy ? "Writing…" : "Write"}
      </button>
      <button type="button" class="button-secondary" onClick={onDone}>
        Cancel
      </button>
      <ErrorAlert error={problem} />
    </form>
  );
}

function ExecuteForm({ endpoint, resource, onDone, onLog }) {
  const [args, setArgs] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    try {
      const answer = await api.post(resourceUrl(endpoint, resource.path), { body: args });
      onLog("EXECUTE", `${resource.path} ${answer.status}`, false);
      toast(`Executed ${resource.name} (${resource.path}).`);
      onDone();
    } catch (failure) {
      onLog("EXECUTE", `${resource.path} ${failure.message}`, true);
      toastError(failure);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="write-form" onSubmit={submit} aria-label={`Execute ${resource.name}`}>
      <Field label={`Arguments for ${resource.name} (optional)`} id={`exec-${resource.path}`} hint="e.g. 0='text',1">
        <input id={`exec-${resource.path}`} class="mono" value={args} onInput={(event) => setArgs(event.currentTarget.value)} />
      </Field>
      <button type="submit" disabled={busy}>
        {busy ? "Executing…" : "Execute"}
      </button>
      <button type="button" class="button-secondary" onClick={onDone}>
        Cancel
      </button>
    </form>
  );
}

function ResourceRow({ endpoint, resource, value, changed, observed, onObserved, onValues, onLog }) {
  const [open, setOpen] = useState(null); // "write" | "execute" | null
  const [busy, setBusy] = useState(false);
  const readable = resource.operations.includes("Read");
  const writable = resource.operations.includes("Write") && !resource.multiple;
  const executable = resource.operations.includes("Execute");

  const call = async (operation, work) => {
    setBusy(true);
    try {
      const answer = await work();
      onLog(operation, `${resource.path} ${answer?.status ?? "done"}`, false);
    } catch (failure) {
      onLog(operation, `${resource.path} ${failure.message}`, true);
      toastError(failure);
    } finally {
      setBusy(false);
    }
  };
  const read = () =>
    call("READ", async () => {
      const answer = await api.get(resourceUrl(endpoint, resource.path));
      onValues(nodeValues(resource.path, answer.content));
      return answer;
    });
  const observe = () =>
    call("OBSERVE", async () => {
      const answer = await api.post(`${resourceUrl(endpoint, resource.path)}/observe`);
      onValues(nodeValues(resource.path, answer.content));
      onObserved(resource.path, true);
      toast(`Observing ${resource.name}.`);
      return answer;
    });
  const cancel = () =>
    call("CANCEL OBSERVE", async () => {
      const answer = await api.delete(`${resourceUrl(endpoint, resource.path)}/observe`);
      onObserved(resource.path, false);
      toast(`Stopped observing ${resource.name}.`);
      return answer;
    });

  return (
    <li class="resource" data-path={resource.path}>
      <div class="resource-name">
        {resource.name}
        <span class="mono">{resource.path}</span>
        {observed && <span class="observing"> · observed</span>}
      </div>
      <div class={changed ? "resource-value updated" : "resource-value"} key={changed} data-testid="value">
        {value === "" || value === undefined ? <span class="muted">{executable ? "" : "not read"}</span> : value}
        {value !== "" && value !== undefined && resource.units && <span class="muted"> {resource.units}</span>}
      </div>
      <div class="resource-actions">
        {readable && can(PERMISSIONS.read) && (
          <button type="button" class="button-secondary button-small" disabled={busy} onClick={read} aria-label={`Read ${resource.name}`}>
            Read
          </button>
        )}
        {writable && can(PERMISSIONS.write) && (
          <button
            type="button"
            class="button-secondary button-small"
            aria-expanded={open === "write"}
            onClick={() => setOpen(open === "write" ? null : "write")}
            aria-label={`Write ${resource.name}`}
          >
            Write
          </button>
        )}
        {executable && can(PERMISSIONS.execute) && (
          <button
            type="button"
            class="button-secondary button-small"
            aria-expanded={open === "execute"}
            onClick={() => setOpen(open === "execute" ? null : "execute")}
            aria-label={`Execute ${resource.name}`}
          >
            Execute
          </button>
        )}
        {readable && !observed && can(PERMISSIONS.observe) && (
          <button type="button" class="button-secondary button-small" disabled={busy} onClick={observe} aria-label={`Observe ${resource.name}`}>
            Observe
          </button>
        )}
        {observed && can(PERMISSIONS.cancel) && (
          <button type="button" class="button-secondary button-small" disabled={busy} onClick={cancel} aria-label={`Stop observing ${resource.name}`}>
            Stop
          </button>
        )}
      </div>
      {open === "write" && (
        <WriteForm
          endpoint={endpoint}
          resource={resource}
          current={value}
          onDone={() => setOpen(null)}
          onValues={onValues}
          onLog={onLog}
        />
      )}
      {open === "execute" && (
        <ExecuteForm endpoint={endpoint} resource={resource} onDone={() => setOpen(null)} onLog={onLog} />
      )}
    </li>
  );
}

function InstanceHead({ endpoint, object, instanceId, onValues }) {
  const [busy, setBusy] = useState(false);
  const path = `/${object.id}/${instanceId}`;
  const readAll = async () => {
    setBusy(true);
    try {
      const answer = await api.get(resourceUrl(endpoint, path));
      onValues(nodeValues(path, answer.content));
    } catch (failure) {
      toastError(failure);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="instance-head">
      <h3>
        Instance {instanceId} <span class="mono">{path}</span>
      </h3>
      {can(PERMISSIONS.read) && (
        <button
          type="button"
          class="button-secondary button-small"
          disabled={busy}
          onClick={readAll}
          aria-label={`Read ${object.name} instance ${instanceId}`}
        >
          Read all
        </button>
      )}
    </div>
  );
}

export function ObjectTree({ endpoint, objects, values, changed, onValues, onLog }) {
  const [observed, setObserved] = useState({});
  const onObserved = (path, on) => setObserved((current) => ({ ...current, [path]: on }));
  if (objects.length === 0) return <p class="muted">No object model or cached data for this device yet.</p>;
  return objects.map((object) => (
    <details class="object" key={object.id} open={!COLLAPSED.has(object.id)} data-object={object.id}>
      <summary>
        {object.name} <span class="muted">/{object.id} · v{object.objectVersion}</span>
      </summary>
      {[...object.instances.entries()].map(([instanceId, resources]) => (
        <div class="instance" key={instanceId}>
          <InstanceHead endpoint={endpoint} object={object} instanceId={instanceId} onValues={onValues} />
          <ul class="resources">
            {resources.map((resource) => (
              <ResourceRow
                key={resource.path}
                endpoint={endpoint}
                resource={resource}
                value={values[resource.path] ?? resource.value}
                changed={changed[resource.path]}
                observed={Boolean(observed[resource.path])}
                onObserved={onObserved}
                onValues={onValues}
                onLog={onLog}
              />
            ))}
          </ul>
        </div>
      ))}
    </details>
  ));
}
