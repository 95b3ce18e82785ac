// Toasts: short messages in an aria-live region, so screen readers announce them.
// toast(text) for news, toastError(error) for a failed call (shows the request id).
import { useEffect, useState } from "preact/hooks";

let nextId = 1;
let shown = [];
const listeners = new Set();

function publish() {
  listeners.forEach((listener) => listener(shown));
}

function dismiss(id) {
  shown = shown.filter((item) => item.id !== id);
  publish();
}

export function toast(text, kind = "info") {
  const id = nextId++;
  shown = [...shown.slice(-4), { id, text, kind }];
  publish();
  setTimeout(() => dismiss(id), kind === "error" ? 10000 : 5000);
}

export function toastError(error) {
  toast(typeof error?.describe === "function" ? error.describe() : String(error?.message ?? error), "error");
}

export function Toasts() {
  const [items, setItems] = useState(shown);
  useEffect(() => {
    listeners.add(setItems);
    return () => listeners.delete(setItems);
  }, []);
  const polite = items.filter((item) => item.kind !== "error");
  const errors = items.filter((item) => item.kind === "error");
  const list = (entries) =>
    entries.map((item) => (
      <div class={`toast toast-${item.kind}`} key={item.id}>
        <span>{item.text}</span>
        <button type="button" class="toast-close" aria-label="Dismiss" onClick={() => dismiss(item.id)}>
          ×
        </button>
      </div>
    ));
  return (
    <div class="toasts">
      <div aria-live="polite" role="status">
        {list(polite)}
      </div>
      <div aria-live="assertive" role="alert">
        {list(errors)}
      </div>
    </div>
  );
}
