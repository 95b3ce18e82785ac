// Small hooks shared by the console's pages.
import { useEffect, useRef, useState } from "preact/hooks";
import { describeError } from "./format.js";

/**
 * useEffect that skips the first render: for syncing state that was initialised from the
 * same inputs, so that it does not overwrite what the user typed in between.
 */
export function useUpdateEffect(effect, deps) {
  const mounted = useRef(false);
  useEffect(() => {
    if (!mounted.current) {
      mounted.current = true;
      return undefined;
    }
    return effect();
  }, deps);
}

/**
 * A form's submit handler around `action`: `busy` while it runs, `error` the description
 * of what it threw (cleared on the next attempt).
 */
export function useSubmit(action) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (failure) {
      setError(describeError(failure));
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, submit };
}
