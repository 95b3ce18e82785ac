// A small History API router under /console: paths like "/devices/:id", a <Link>, and
// navigate(). The server answers every /console/* page path with index.html.
import { useEffect, useState } from "preact/hooks";

export const BASE = "/console";
const listeners = new Set();

function appPath() {
  const path = window.location.pathname;
  const inside = path.startsWith(BASE) ? path.slice(BASE.length) : path;
  return inside === "" ? "/" : inside;
}

function publish() {
  const where = `${appPath()}${window.location.search}`;
  listeners.forEach((listener) => listener(where));
}

window.addEventListener("popstate", publish);

export function navigate(path, { replace = false } = {}) {
  const target = `${BASE}${path}`;
  if (replace) window.history.replaceState(null, "", target);
  else window.history.pushState(null, "", target);
  publish();
}

/** The app path ("/devices/x"); re-renders on every navigation, query changes too. */
export function useLocation() {
  const [, setWhere] = useState(`${appPath()}${window.location.search}`);
  useEffect(() => {
    listeners.add(setWhere);
    return () => listeners.delete(setWhere);
  }, []);
  return appPath();
}

/** Query parameters of the current URL as an object. */
export function useQuery() {
  useLocation();
  return Object.fromEntries(new URLSearchParams(window.location.search));
}

/** The route whose pattern matches `path`, with its decoded parameters. */
export function match(routes, path) {
  const parts = path.split("/").filter(Boolean);
  for (const route of routes) {
    const pattern = route.path.split("/").filter(Boolean);
    if (pattern.length !== parts.length) continue;
    const params = {};
    const ok = pattern.every((piece, index) => {
      if (piece.startsWith(":")) {
        params[piece.slice(1)] = decodeURIComponent(parts[index]);
        return true;
      }
      return piece === parts[index];
    });
    if (ok) return { route, params };
  }
  return null;
}

/** An in-app link: a real <a href> (open in a new tab works), navigated without reload. */
export function Link({ href, children, ...rest }) {
  const onClick = (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(href);
  };
  return (
    <a href={`${BASE}${href}`} onClick={onClick} {...rest}>
      {children}
    </a>
  );
}
