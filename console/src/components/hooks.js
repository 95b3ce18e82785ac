// Small hooks shared by the console's pages.
import { useEffect, useRef } from "preact/hooks";

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
