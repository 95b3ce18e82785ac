// A labelled form control. Every input of the console goes through one of these, so
// every input has a <label>. `hint` is tied to the control with aria-describedby.
import { useId } from "preact/hooks";

export function Field({ label, id, hint, children, inline = false }) {
  const hintId = hint ? `${id}-hint` : undefined;
  return (
    <div class={inline ? "field field-inline" : "field"}>
      <label for={id}>{label}</label>
      {typeof children === "function" ? children({ id, "aria-describedby": hintId }) : children}
      {hint && (
        <small id={hintId} class="hint">
          {hint}
        </small>
      )}
    </div>
  );
}

/** An <input> with its label; `onValue` gets the new value (or `checked`). */
export function Input({ label, hint, id, type = "text", value, onValue, inline, ...rest }) {
  const generated = useId();
  const inputId = id ?? generated;
  return (
    <Field label={label} id={inputId} hint={hint} inline={inline || type === "checkbox"}>
      {(aria) => (
        <input
          {...aria}
          {...rest}
          type={type}
          {...(type === "checkbox" ? { checked: Boolean(value) } : { value: value ?? "" })}
          onInput={(event) =>
            onValue?.(type === "checkbox" ? event.currentTarget.checked : event.currentTarget.value)
          }
        />
      )}
    </Field>
  );
}

export function Select({ label, hint, id, value, onValue, options, ...rest }) {
  const generated = useId();
  const selectId = id ?? generated;
  return (
    <Field label={label} id={selectId} hint={hint}>
      {(aria) => (
        <select {...aria} {...rest} value={value} onChange={(event) => onValue?.(event.currentTarget.value)}>
          {options.map((option) =>
            typeof option === "string" ? (
              <option key={option} value={option}>
                {option}
              </option>
            ) : (
              <option key={option.value} value={option.value}>
                {option.label}
              </option>
            ),
          )}
        </select>
      )}
    </Field>
  );
}
