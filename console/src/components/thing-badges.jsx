// Badges of a Thing (SIM card): its lifecycle state and its connection, and its SMS count.

const STATE_CLASS = { ACTIVE: "online", TEST_ACTIVE: "online", PROVISIONED: "sleeping", SUSPENDED: "failed", RETIRED: "offline" };

export function ThingState({ state }) {
  return (
    <span class={`badge badge-${STATE_CLASS[state] ?? "offline"}`} data-state={state}>
      {state}
    </span>
  );
}

export const smsCount = (thing) => (thing.ActualUsage?.MT_SMS_CDR_ ?? 0) + (thing.ActualUsage?.MO_SMS_CDR_ ?? 0);

export function ConnectionBadge({ status }) {
  if (!status) return <span class="muted">unknown</span>;
  const connected = status === "CONNECTED";
  return (
    <span class={`badge badge-${connected ? "online" : "offline"}`} data-connection={status}>
      {connected ? "Connected" : "Disconnected"}
    </span>
  );
}

