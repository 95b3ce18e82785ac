// Roles (= user profiles): every role the admin sees with its permissions and its
// profile map (GET /api/admin/roles), and a form to create one (POST /api/admin/roles)
// from permissions the admin holds. The server refuses a permission the caller does
// not hold; its answer is shown as it is.
import { useEffect, useMemo, useState } from "preact/hooks";
import { describeError } from "../components/format.js";
import { Input, Select } from "../components/field.jsx";
import { FormFooter } from "../components/form-footer.jsx";
import { useSubmit } from "../components/hooks.js";
import { toast } from "../components/toast.jsx";
import { COIOTE, api } from "../lib/api.js";
import { can, currentUser } from "../lib/session.js";
import { ErrorAlert } from "../components/error-alert.jsx";
import "../components/panels.css";

const SURFACES = { admin: "Administration", auth: "Account", console: "Connectivity (console)", lwm2m: "LwM2M operations", profile: "Profile capabilities" };

/** The API surface a catalog permission belongs to ("console:GET /things" → console). */
function surfaceOf(permission) {
  const prefix = permission.split(":")[0];
  return SURFACES[prefix] ? prefix : "coiote";
}

const surfaceLabel = (key) => SURFACES[key] ?? "Coiote DM API";

function RoleDetails({ role }) {
  const resources = Object.entries(role.profile ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return (
    <details class="role" data-role={role.name}>
      <summary>
        <strong>{role.name}</strong>{" "}
        <span class="muted">
          {role.builtin ? "built in" : role.domain} · {role.permissions.length} permissions
        </span>
      </summary>
      <div class="role-body">
        <h3>Profile</h3>
        {resources.length ? (
          <table class="table compact">
            <caption>Actions per resource</caption>
            <thead>
              <tr>
                <th scope="col">Resource</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {resources.map(([resource, actions]) => (
                <tr key={resource}>
                  <td data-label="Resource">{resource}</td>
                  <td data-label="Actions">{actions.join(", ")}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p class="muted">No resource.</p>
        )}
        <h3>Permissions</h3>
        <ul class="permission-list">
          {role.permissions.map((permission) => (
            <li key={permission}>
              <code>{permission}</code>
            </li>
          ))}
        </ul>
      </div>
    </details>
  );
}

function NewRoleForm({ domains, onCreated }) {
  const held = useMemo(() => [...(currentUser()?.permissions ?? [])].sort(), []);
  const [name, setName] = useState("");
  const [domain, setDomain] = useState("");
  const [filter, setFilter] = useState("");
  const [chosen, setChosen] = useState(new Set());
  const shown = held.filter((permission) => permission.toLowerCase().includes(filter.trim().toLowerCase()));
  const groups = {};
  for (const permission of shown) (groups[surfaceOf(permission)] ??= []).push(permission);

  const toggle = (permission, on) => {
    const next = new Set(chosen);
    if (on) next.add(permission);
    else next.delete(permission);
    setChosen(next);
  };
  const chooseShown = (on) => {
    const next = new Set(chosen);
    for (const permission of shown) {
      if (on) next.add(permission);
      else next.delete(permission);
    }
    setChosen(next);
  };
  const { busy, error, submit } = useSubmit(async () => {
    const role = await api.post("/api/admin/roles", {
      json: { name: name.trim(), permissions: [...chosen], domain: domain || undefined },
    });
    toast(`Role ${role.name} created with ${role.permissions.length} permissions.`);
    setName("");
    setChosen(new Set());
    onCreated();
  });
  return (
    <form class="panel form-grid" onSubmit={submit} aria-labelledby="new-role-title">
      <h2 id="new-role-title">New role</h2>
      <Input label="Name" value={name} onValue={setName} spellcheck={false} required />
      <Select
        label="Domain"
        value={domain}
        onValue={setDomain}
        options={[{ value: "", label: "Your own domain" }, ...domains]}
      />
      <fieldset class="form-wide permissions-picker">
        <legend>
          Permissions ({chosen.size} of the {held.length} you hold)
        </legend>
        <div class="form-row">
          <Input label="Filter permissions" value={filter} onValue={setFilter} spellcheck={false} />
          <button type="button" class="button-small button-secondary" onClick={() => chooseShown(true)}>
            Choose all shown
          </button>
          <button type="button" class="button-small button-secondary" onClick={() => chooseShown(false)}>
            Clear shown
          </button>
        </div>
        <div class="permission-groups">
          {Object.entries(groups).map(([surface, permissions]) => (
            <div key={surface} class="permission-group">
              <h3>{surfaceLabel(surface)}</h3>
              {permissions.map((permission) => (
                <Input
                  key={permission}
                  type="checkbox"
                  label={permission}
                  value={chosen.has(permission)}
                  onValue={(on) => toggle(permission, on)}
                />
              ))}
            </div>
          ))}
          {shown.length === 0 && <p class="muted">No permission matches.</p>}
        </div>
      </fieldset>
      <FormFooter error={error} disabled={busy}>
        {busy ? "Creating…" : "Create role"}
      </FormFooter>
    </form>
  );
}

export function RolesPage() {
  const [roles, setRoles] = useState(null);
  const [error, setError] = useState(null);
  const [domains, setDomains] = useState([]);
  const [loads, setLoads] = useState(0);

  useEffect(() => {
    api.get("/api/admin/roles").then(setRoles, (failure) => setError(describeError(failure)));
  }, [loads]);
  useEffect(() => {
    if (can("admin:POST /api/admin/roles") && can("GET domains")) api.get(`${COIOTE}/domains`).then(setDomains, () => {});
  }, []);

  return (
    <section aria-labelledby="roles-title">
      <div class="page-head">
        <h1 id="roles-title">Roles</h1>
      </div>
      {can("admin:POST /api/admin/roles") && <NewRoleForm domains={domains} onCreated={() => setLoads(loads + 1)} />}
      <ErrorAlert error={error} />
      <h2>Roles you see</h2>
      {roles === null && !error && <p aria-busy="true">Loading…</p>}
      <div class="roles">
        {(roles ?? []).map((role) => (
          <RoleDetails key={role.id} role={role} />
        ))}
      </div>
    </section>
  );
}
