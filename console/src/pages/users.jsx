// Users of the admin's domain subtree (GET /api/admin/users), a form to create one
// (POST users) with roles from GET /api/admin/roles, and enable/disable per user
// (PATCH users/{login} userEnabled). The server decides what may be granted: a caller
// never hands out a permission it does not hold, and its refusal is shown as it is.
import { useEffect, useState } from "preact/hooks";
import { describeError } from "../components/format.js";
import { Input, Select } from "../components/field.jsx";
import { FormFooter } from "../components/form-footer.jsx";
import { useSubmit } from "../components/hooks.js";
import { Table } from "../components/table.jsx";
import { toast } from "../components/toast.jsx";
import { COIOTE, api, segment } from "../lib/api.js";
import { can, currentUser } from "../lib/session.js";
import { ErrorAlert } from "../components/error-alert.jsx";
import "../components/panels.css";

const ACCOUNT_TYPES = ["developer", "business", "admin"];

function NewUserForm({ domains, roles, onCreated }) {
  const [login, setLogin] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [domain, setDomain] = useState(currentUser()?.domain ?? "");
  const [accountType, setAccountType] = useState("developer");
  const [chosen, setChosen] = useState([]);

  const toggle = (name, on) => setChosen(on ? [...chosen, name] : chosen.filter((item) => item !== name));
  const { busy, error, submit } = useSubmit(async () => {
    await api.post(`${COIOTE}/users`, {
      json: {
        login: login.trim(),
        email: email.trim(),
        password,
        domain,
        accountType,
        roles: chosen,
        emailVerified: true,
        tosAccepted: true,
      },
    });
    toast(`User ${login.trim()} created.`);
    setLogin("");
    setEmail("");
    setPassword("");
    setChosen([]);
    onCreated();
  });
  return (
    <form class="panel form-grid" onSubmit={submit} aria-labelledby="new-user-title">
      <h2 id="new-user-title">New user</h2>
      <Input label="Login" value={login} onValue={setLogin} autocomplete="off" spellcheck={false} required />
      <Input label="Email" type="email" value={email} onValue={setEmail} autocomplete="off" />
      <Input label="Password" type="password" value={password} onValue={setPassword} autocomplete="new-password" required />
      {can("GET domains") ? (
        <Select label="Domain" value={domain} onValue={setDomain} options={domains.length ? domains : [domain]} />
      ) : (
        <Input label="Domain" value={domain} onValue={setDomain} spellcheck={false} required />
      )}
      <Select label="Account type" value={accountType} onValue={setAccountType} options={ACCOUNT_TYPES} />
      {roles.length > 0 && (
        <fieldset class="checks form-wide">
          <legend>Roles</legend>
          {roles.map((role) => (
            <Input
              key={role.id}
              type="checkbox"
              label={`${role.name}${role.domain ? ` (${role.domain})` : ""}`}
              value={chosen.includes(role.name)}
              onValue={(on) => toggle(role.name, on)}
            />
          ))}
        </fieldset>
      )}
      <FormFooter error={error} disabled={busy}>
        {busy ? "Creating…" : "Create user"}
      </FormFooter>
    </form>
  );
}

export function UsersPage() {
  const [users, setUsers] = useState([]);
  const [busy, setBusy] = useState(true);
  const [error, setError] = useState(null);
  const [domains, setDomains] = useState([]);
  const [roles, setRoles] = useState([]);
  const [loads, setLoads] = useState(0);
  const me = currentUser();

  useEffect(() => {
    setBusy(true);
    api
      .get("/api/admin/users", { query: { limit: 1000 } })
      .then(setUsers, (failure) => setError(describeError(failure)))
      .finally(() => setBusy(false));
  }, [loads]);
  useEffect(() => {
    if (!can("POST users")) return;
    if (can("GET domains")) api.get(`${COIOTE}/domains`).then(setDomains, () => setDomains([]));
    if (can("admin:GET /api/admin/roles")) api.get("/api/admin/roles").then(setRoles, () => setRoles([]));
  }, []);

  const setEnabled = async (user, enabled) => {
    setError(null);
    try {
      await api.patch(`${COIOTE}/users/${segment(user.login)}`, { json: { userEnabled: enabled } });
      toast(`${user.login} ${enabled ? "enabled" : "disabled"}.`);
      setLoads(loads + 1);
    } catch (failure) {
      setError(describeError(failure));
    }
  };

  const columns = [
    { key: "login", label: "Login" },
    { key: "domain", label: "Domain" },
    { key: "accountType", label: "Account" },
    { key: "roles", label: "Roles", render: (user) => user.roles.join(", ") || <span class="muted">none</span> },
    {
      key: "active",
      label: "State",
      render: (user) => (
        <span class={`badge badge-${user.active ? "online" : "offline"}`} data-active={String(user.active)}>
          {user.active ? "Enabled" : "Disabled"}
        </span>
      ),
    },
    {
      key: "actions",
      label: "Actions",
      render: (user) =>
        can("PATCH users/{id}") && user.login !== me?.login ? (
          <button
            type="button"
            class="button-small button-secondary"
            onClick={() => setEnabled(user, !user.active)}
            aria-label={`${user.active ? "Disable" : "Enable"} ${user.login}`}
          >
            {user.active ? "Disable" : "Enable"}
          </button>
        ) : null,
    },
  ];

  return (
    <section aria-labelledby="users-title">
      <div class="page-head">
        <h1 id="users-title">Users</h1>
      </div>
      {can("POST users") && <NewUserForm domains={domains} roles={roles} onCreated={() => setLoads(loads + 1)} />}
      <ErrorAlert error={error} />
      <Table
        caption="Users of your domain and the domains below it"
        columns={columns}
        rows={users}
        rowKey={(user) => user.userId}
        busy={busy}
        empty="No user."
      />
    </section>
  );
}
