// The end of every create/send form: the error of the last attempt and the submit button.
import { ErrorAlert } from "./error-alert.jsx";

/** `error` is shown as an alert; `children` is the button's text. */
export function FormFooter({ error, disabled = false, children }) {
  return (
    <>
      <ErrorAlert error={error} wide />
      <div class="form-actions form-wide">
        <button type="submit" disabled={disabled}>
          {children}
        </button>
      </div>
    </>
  );
}
