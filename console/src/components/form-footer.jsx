// The end of every create/send form: the error of the last attempt and the submit button.

/** `error` is shown as an alert; `children` is the button's text. */
export function FormFooter({ error, disabled = false, children }) {
  return (
    <>
      {error && (
        <p class="form-error form-wide" role="alert">
          {error}
        </p>
      )}
      <div class="form-actions form-wide">
        <button type="submit" disabled={disabled}>
          {children}
        </button>
      </div>
    </>
  );
}
