// One Thing (SIM card): its details and usage (GET /thing/{id}), its connection
// (GET /thing/status), state changes along the SIM lifecycle (PUT /thing/{id}/state),
// ping (POST /thing/{id}/ping), MT SMS (POST /thing/{id}/sms) and refresh connection,
// each shown only to a user holding its permission.
import { useEffect, useState } from "preact/hooks";
import { describeError, formatBytes, formatTime } from "../components/format.js";
import { Input } from "../components/field.jsx";
import { FormFooter } from "../components/form-footer.jsx";
import { useSubmit } from "../components/hooks.js";
import { toast } from "../components/toast.jsx";
import { api, segment } from "../lib/api.js";
import { Link } from "../lib/router.jsx";
import { can } from "../lib/session.js";
import { ConnectionBadge, ThingState, smsCount } from "../components/thing-badges.jsx";
import { ErrorAlert } from "../components/error-alert.jsx";
import "../components/panels.css";

/** The SIM lifecycle (the server checks every move; this only picks the buttons). */
const NEXT_STATES = {
  PROVISIONED: ["TEST_ACTIVE", "ACTIVE"],
  TEST_ACTIVE: ["ACTIVE", "SUSPENDED"],
  ACTIVE: ["SUSPENDED"],
  SUSPENDED: ["ACTIVE", "RETIRED"],
  RETIRED: [],
};
const STATE_ACTIONS = {
  TEST_ACTIVE: "Start test",
  ACTIVE: "Activate",
  SUSPENDED: "Suspend",
  RETIRED: "Retire",
};
function SmsForm({ thing, onSent }) {
  const [message, setMessage] = useState("");
  const [from, setFrom] = useState("");
  const { busy, error, submit: send } = useSubmit(async () => {
    const id = await api.post(`/thing/${segment(thing.ThingId)}/sms`, { json: { Message: message, From: from } });
    toast(`SMS sent (message id ${id}).`);
    setMessage("");
    onSent();
  });
  return (
    <form class="panel form-grid" onSubmit={send} aria-labelledby="sms-title">
      <h2 id="sms-title">Send an SMS</h2>
      <Input label="Message" value={message} onValue={setMessage} maxLength={1000} required />
      <Input label="From (optional)" value={from} onValue={setFrom} hint="A name or a number without +" />
      <FormFooter error={error} disabled={busy || !message}>
        Send SMS
      </FormFooter>
    </form>
  );
}

export function ThingPage({ id }) {
  const [thing, setThing] = useState(null);
  const [connection, setConnection] = useState(null);
  const [error, setError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [ping, setPing] = useState(null);
  const [loads, setLoads] = useState(0);

  useEffect(() => {
    api.get(`/thing/${segment(id)}`).then(setThing, (failure) => setError(describeError(failure)));
    if (can("console:GET /thing/status")) {
      api.get("/thing/status", { query: { ThingIds: id } }).then(
        (answer) => setConnection(answer.Data[0] ?? null),
        () => setConnection(null),
      );
    }
  }, [id, loads]);

  const act = async (work) => {
    setBusy(true);
    setActionError(null);
    try {
      await work();
    } catch (failure) {
      setActionError(describeError(failure));
    } finally {
      setBusy(false);
    }
  };
  const changeState = (state) =>
    act(async () => {
      await api.put(`/thing/${segment(id)}/state`, { json: { state } });
      toast(`${thing.ThingName || id} is now ${state}.`);
      setLoads(loads + 1);
    });
  // The console's ping wants the caller's CustomerId as `apikey`; a Thing of the
  // caller's own domain carries the same one (another domain's is refused: 403). Without
  // one the server would answer 401, which the API client takes for an ended session.
  const doPing = () =>
    act(async () => {
      const response = await fetchPing();
      setPing(response[0]);
    });
  const fetchPing = () =>
    api.post(`/thing/${segment(id)}/ping`, { json: {}, headers: { apikey: thing.CustomerId } });
  const refresh = () =>
    act(async () => {
      const answer = await api.get(`/thing/${segment(id)}/refreshConnection`);
      toast(answer.Message ?? "Refresh requested.");
    });

  if (error) {
    return (
      <section>
        <h1>Thing {id}</h1>
        <p class="form-error" role="alert">
          {error}
        </p>
        <Link href="/things">Back to the Things</Link>
      </section>
    );
  }
  if (!thing) return <p aria-busy="true">Loading…</p>;
  const usage = thing.ActualUsage ?? {};
  const next = NEXT_STATES[thing.State] ?? [];
  return (
    <section aria-labelledby="thing-title">
      <p class="crumbs">
        <Link href="/things">Things</Link> / {thing.ThingId}
      </p>
      <div class="page-head">
        <h1 id="thing-title">{thing.ThingName || thing.ThingId}</h1>
        <ThingState state={thing.State} />
        <ConnectionBadge status={connection?.ConnectionStatus} />
      </div>
      <div class="columns">
        <dl class="facts">
          <dt>ICCID</dt>
          <dd class="mono">{thing.ExternalUniqueId}</dd>
          <dt>IMEI</dt>
          <dd class="mono">{thing.IMEI || "none"}</dd>
          {thing.IMSI !== undefined && (
            <>
              <dt>IMSI</dt>
              <dd class="mono">{thing.IMSI || "none"}</dd>
              <dt>MSISDN</dt>
              <dd class="mono">{thing.MSISDN || "none"}</dd>
            </>
          )}
          <dt>Device</dt>
          <dd>
            {thing.DeviceEndpoint ? (
              can("GET devices/{id}") ? (
                <Link href={`/devices/${segment(thing.DeviceEndpoint)}`}>{thing.DeviceEndpoint}</Link>
              ) : (
                thing.DeviceEndpoint
              )
            ) : (
              "not linked"
            )}
          </dd>
          <dt>IP address</dt>
          <dd class="mono">{thing.IPs?.map((ip) => ip.IP).join(", ") || "none"}</dd>
          <dt>Things group</dt>
          <dd>{thing.ThingsGroupId || "none"}</dd>
          <dt>Tags</dt>
          <dd>{thing.Tags?.join(", ") || "none"}</dd>
          <dt>Last connected</dt>
          <dd>{formatTime(connection?.LastConnectionTime) || "never"}</dd>
          <dt>Created</dt>
          <dd>{formatTime(thing.DateCreated)}</dd>
        </dl>
        <div>
          <h2 class="first">Usage</h2>
          <dl class="stats" data-testid="usage">
            <div class="stat">
              <dt>Data</dt>
              <dd>{formatBytes(usage.Data_)}</dd>
            </div>
            <div class="stat">
              <dt>Data in</dt>
              <dd>{formatBytes(usage.DataIn_)}</dd>
            </div>
            <div class="stat">
              <dt>Data out</dt>
              <dd>{formatBytes(usage.DataOut_)}</dd>
            </div>
            <div class="stat">
              <dt>Messages</dt>
              <dd>{usage.Messages_ ?? 0}</dd>
            </div>
            <div class="stat">
              <dt>SMS</dt>
              <dd>{smsCount(thing)}</dd>
            </div>
          </dl>
        </div>
      </div>
      <h2>Actions</h2>
      <div class="actions" role="group" aria-label="Thing actions">
        {can("console:PUT /thing/{ThingId}/state") &&
          next.map((state) => (
            <button
              key={state}
              type="button"
              class={state === "SUSPENDED" || state === "RETIRED" ? "button-secondary button-danger" : ""}
              disabled={busy}
              onClick={() => changeState(state)}
            >
              {STATE_ACTIONS[state]}
            </button>
          ))}
        {can("console:POST /thing/{ThingId}/ping") && thing.CustomerId && (
          <button type="button" class="button-secondary" disabled={busy} onClick={doPing}>
            Ping
          </button>
        )}
        {can("console:GET /thing/{ThingId}/refreshConnection") && (
          <button type="button" class="button-secondary" disabled={busy} onClick={refresh}>
            Refresh connection
          </button>
        )}
      </div>
      <ErrorAlert error={actionError} />
      {ping && (
        <p class="ping" role="status">
          Ping {ping.host || "(no address)"}: {ping.received}/{ping.sent} received
          {ping.time !== null && ping.time !== undefined ? `, ${ping.time} ms` : ""}, {ping.packetLoss}% loss
        </p>
      )}
      {can("console:POST /thing/{ThingId}/sms") && <SmsForm thing={thing} onSent={() => setLoads(loads + 1)} />}
    </section>
  );
}
