// The console's only way to the server: the public REST API, like any other client.
//
// The tokens live in this module's memory only (never localStorage or cookies): a reload
// signs the user out. The access token is refreshed (refresh_token grant) before it
// expires; refresh tokens are single use, so one refresh at a time. Logout revokes the
// session on the server (POST /api/auth/logout).

const REFRESH_MARGIN_SECONDS = 30;

let tokens = null; // { access, refresh, expiresAt }
let refreshTimer = null;
let refreshing = null;
const sessionListeners = new Set();

/** An error answer of the API, with what the user needs to report it. */
export class ApiError extends Error {
  constructor(status, message, { code, requestId } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  /** The text to show: the message, and the request id when the server gave one. */
  describe() {
    const id = this.requestId ? ` (request id ${this.requestId})` : "";
    return `${this.message}${id}`;
  }
}

/** Called with true on sign-in and false when the session ends (logout, expiry). */
export function onSessionChange(listener) {
  sessionListeners.add(listener);
  return () => sessionListeners.delete(listener);
}

export function signedIn() {
  return tokens !== null;
}

function setTokens(body) {
  const wasSignedIn = tokens !== null;
  tokens = {
    access: body.access_token,
    refresh: body.refresh_token ?? null,
    expiresAt: Date.now() + body.expires_in * 1000,
  };
  clearTimeout(refreshTimer);
  if (tokens.refresh) {
    const delay = Math.max(body.expires_in - REFRESH_MARGIN_SECONDS, body.expires_in / 2, 1);
    refreshTimer = setTimeout(() => refresh().catch(() => endSession()), delay * 1000);
  }
  if (!wasSignedIn) sessionListeners.forEach((listener) => listener(true));
}

function endSession() {
  clearTimeout(refreshTimer);
  const wasSignedIn = tokens !== null;
  tokens = null;
  if (wasSignedIn) sessionListeners.forEach((listener) => listener(false));
}

async function errorOf(response) {
  const requestId =
    response.headers.get("x-request-id") ?? response.headers.get("request-id") ?? undefined;
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: the status text says it
  }
  const message = body?.message ?? body?.error ?? `${response.status} ${response.statusText}`;
  return new ApiError(response.status, String(message), {
    code: body?.code,
    requestId: body?.requestId ?? body?.request_id ?? requestId,
  });
}

async function postForm(path, fields) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields),
  });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** Password grant; `otp` is the two-factor code when the account has 2FA on. */
export async function login(username, password, otp) {
  const fields = { grant_type: "password", username, password };
  if (otp) fields.otp = otp;
  setTokens(await postForm("/api/auth/oauth_password", fields));
}

/** A new access token from the refresh token (rotation: the old one is spent). */
export function refresh() {
  if (!tokens?.refresh) return Promise.reject(new ApiError(401, "not signed in"));
  refreshing ??= postForm("/api/auth/refresh", {
    grant_type: "refresh_token",
    refresh_token: tokens.refresh,
  })
    .then(setTokens)
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

/** Revoke the session on the server, then forget the tokens. */
export async function logout() {
  if (!tokens) return;
  try {
    await request("POST", "/api/auth/logout");
  } finally {
    endSession();
  }
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") params.append(key, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function send(method, path, options, retried) {
  if (!tokens) throw new ApiError(401, "not signed in");
  if (refreshing) await refreshing;
  const headers = { ...options.headers, Authorization: `Bearer ${tokens.access}`, Accept: "application/json" };
  let body = options.body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  } else if (typeof body === "string") {
    headers["Content-Type"] = "text/plain; charset=utf-8";
  }
  const response = await fetch(url(path, options.query), {
    method,
    headers,
    body,
    signal: options.signal,
  });
  if (response.status === 401 && !retried && tokens?.refresh) {
    try {
      await refresh();
    } catch {
      endSession();
      throw await errorOf(response);
    }
    return send(method, path, options, true);
  }
  if (response.status === 401) endSession();
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") ?? "";
  return type.includes("json") ? response.json() : response.text();
}

/**
 * One API call. `options`: `query` (object), `json` (a body sent as JSON), `body` (text),
 * `headers` (extra request headers), `signal`. Resolves to the parsed JSON (or text, or null
 * for 204); rejects with ApiError.
 */
export function request(method, path, options = {}) {
  return send(method, path, options, false);
}

export const api = {
  get: (path, options) => request("GET", path, options),
  post: (path, options) => request("POST", path, options),
  put: (path, options) => request("PUT", path, options),
  patch: (path, options) => request("PATCH", path, options),
  delete: (path, options) => request("DELETE", path, options),
};

/** Path segment encoding for ids that may hold `/` or spaces. */
export const segment = (text) => encodeURIComponent(text);

export const COIOTE = "/api/coiotedm/v3";
export const LWM2M = "/api/lwm2m/v1";

/** Dispatch the complete events in `buffer` (SSE text); returns the incomplete rest. */
export function parseEvents(buffer, onEvent) {
  let rest = buffer;
  let end = rest.search(/\r?\n\r?\n/);
  while (end >= 0) {
    const block = rest.slice(0, end);
    rest = rest.slice(end + (rest[end] === "\r" ? 4 : 2));
    let name = "message";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length) {
      let parsed = data.join("\n");
      try {
        parsed = JSON.parse(parsed);
      } catch {
        // plain text data
      }
      onEvent(name, parsed);
    }
    end = rest.search(/\r?\n\r?\n/);
  }
  return rest;
}

/**
 * Follow a Server-Sent Events route with the bearer token (EventSource cannot send one,
 * and a token in the URL would end up in logs). Reconnects after a drop until `signal`
 * aborts or the session ends. `onStatus` hears "open" / "closed".
 */
export async function followEvents(path, query, onEvent, { signal, onStatus } = {}) {
  let delay = 1000;
  while (!signal?.aborted && tokens) {
    try {
      if (refreshing) await refreshing;
      const response = await fetch(url(path, query), {
        headers: { Authorization: `Bearer ${tokens.access}`, Accept: "text/event-stream" },
        signal,
      });
      if (response.status === 401 && tokens?.refresh) {
        await refresh();
        continue;
      }
      if (!response.ok) throw await errorOf(response);
      onStatus?.("open");
      delay = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseEvents(buffer + value, onEvent);
      }
    } catch (error) {
      if (signal?.aborted) return;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
        onStatus?.("closed");
        throw error;
      }
    }
    onStatus?.("closed");
    if (signal?.aborted || !tokens) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}
