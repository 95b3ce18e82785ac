// Domains: the admin's domain and those below it (GET domains, descriptions from
// GET domains/{id}), and a form to create a subdomain (POST domains).
import { useEffect, useState } from "preact/hooks";
import { describeError } from "../components/format.js";
import { Input } from "../components/field.jsx";
import { FormFooter } from "../components/form-footer.jsx";
import { Table } from "../components/table.jsx";
import { toast } from "../components/toast.jsx";
import { COIOTE, api } from "../lib/api.js";
import { can, currentUser } from "../lib/session.js";
import { ErrorAlert } from "../components/error-alert.jsx";
import "../components/panels.css";

/** Domain ids end with "/" (/root/acme/); the id in the path keeps its slashes. */
const domainPath = (id) => `${COIOTE}/domains${id.startsWith("/") ? "" : "/"}${id.split("/").map(encodeURIComponent).join("/")}`;

export function DomainsPage() {
  const [domains, setDomains] = useState([]);
  const [busy, setBusy] = useState(true);
  const [error, setError] = useState(null);
  const [loads, setLoads] = useState(0);
  const [id, setId] = useState(currentUser()?.domain ?? "/root/");
  const [description, setDescription] = useState("");
  const [formError, setFormError] = useState(null);

  useEffect(() => {
    let cancelled = false;
    setBusy(true);
    (async () => {
      try {
        const ids = await api.get(`${COIOTE}/domains`);
        const rows = can("GET domains/{id}")
          ? await Promise.all(ids.map((domain) => api.get(domainPath(domain)).catch(() => ({ id: domain }))))
          : ids.map((domain) => ({ id: domain }));
        if (!cancelled) setDomains(rows);
      } catch (failure) {
        if (!cancelled) setError(describeError(failure));
      } finally {
        if (!cancelled) setBusy(false);
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [loads]);

  const create = async (event) => {
    event.preventDefault();
    setFormError(null);
    try {
      const created = await api.post(`${COIOTE}/domains`, { json: { id: id.trim(), description: description.trim() } });
      toast(`Domain ${created.result} created.`);
      setId(currentUser()?.domain ?? "/root/");
      setDescription("");
      setLoads(loads + 1);
    } catch (failure) {
      setFormError(describeError(failure));
    }
  };

  const depth = (domain) => domain.split("/").filter(Boolean).length;
  return (
    <section aria-labelledby="domains-title">
      <div class="page-head">
        <h1 id="domains-title">Domains</h1>
      </div>
      {can("POST domains") && (
        <form class="panel form-grid" onSubmit={create} aria-labelledby="new-domain-title">
          <h2 id="new-domain-title">New domain</h2>
          <Input
            label="Domain id"
            value={id}
            onValue={setId}
            hint="Below your own, ending with /, e.g. /root/acme/"
            spellcheck={false}
            required
          />
          <Input label="Description" value={description} onValue={setDescription} />
          <FormFooter error={formError}>Create domain</FormFooter>
        </form>
      )}
      <ErrorAlert error={error} />
      <Table
        caption="Your domain and the domains below it"
        columns={[
          {
            key: "id",
            label: "Domain",
            render: (domain) => (
              <span class="mono" style={{ paddingLeft: `${Math.max(depth(domain.id) - 1, 0)}rem` }}>
                {domain.id}
              </span>
            ),
          },
          { key: "description", label: "Description", render: (domain) => domain.description ?? "" },
        ]}
        rows={domains}
        rowKey={(domain) => domain.id}
        busy={busy}
        empty="No domain."
      />
    </section>
  );
}
