// The console's one way to show what went wrong: an alert paragraph, nothing when all is well.

/** `error` (a message or null); `wide` spans every column of a form grid. */
export function ErrorAlert({ error, wide = false }) {
  if (!error) return null;
  return (
    <p class={wide ? "form-error form-wide" : "form-error"} role="alert">
      {error}
    </p>
  );
}
