// Who is signed in and what they may do, from GET /api/auth/me (the caller's own
// effective permissions). Pages and buttons ask `can(permission)` with the permission's
// catalog name (the one the route declares), so a user never sees a button the API
// would refuse.
import { useEffect, useState } from "preact/hooks";
import { api, login, logout, onSessionChange } from "./api.js";

let user = null; // { login, domain, accountType, permissions: Set }
const listeners = new Set();

function publish() {
  listeners.forEach((listener) => listener(user));
}

onSessionChange((active) => {
  if (!active && user) {
    user = null;
    publish();
  }
});

export async function signIn(username, password, otp) {
  await login(username, password, otp);
  const me = await api.get("/api/auth/me");
  user = { ...me, permissions: new Set(me.permissions) };
  publish();
}

export async function signOut() {
  try {
    await logout();
  } finally {
    user = null;
    publish();
  }
}

export function currentUser() {
  return user;
}

/** Does the signed-in user hold this catalog permission? */
export function can(permission) {
  return Boolean(user?.permissions.has(permission));
}

export function useUser() {
  const [current, setCurrent] = useState(user);
  useEffect(() => {
    listeners.add(setCurrent);
    setCurrent(user);
    return () => listeners.delete(setCurrent);
  }, []);
  return current;
}
