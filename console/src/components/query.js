// The current URL's query for pages whose state lives in it (filters, ranges).
//
// The router re-renders its users when the path changes; a navigation that changes only
// the query (/things?state=ACTIVE → /things?state=SUSPENDED) or a Back/Forward between two
// such URLs keeps the path, so pages that read the query also listen here.
import { useEffect, useState } from "preact/hooks";
import { navigate, useQuery } from "../lib/router.jsx";

/** [query object, go(path)]: `go` navigates and re-renders the caller. */
export function useLiveQuery() {
  const [, setVersion] = useState(0);
  useEffect(() => {
    const bump = () => setVersion((version) => version + 1);
    window.addEventListener("popstate", bump);
    return () => window.removeEventListener("popstate", bump);
  }, []);
  const go = (path) => {
    navigate(path);
    setVersion((version) => version + 1);
  };
  return [useQuery(), go];
}
