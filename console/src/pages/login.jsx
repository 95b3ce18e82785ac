// Sign in with the password grant. When the account has two-factor authentication on,
// the server answers 401 "two-factor authentication code required": the code field
// appears and the user signs in again with it.
import { useState } from "preact/hooks";
import { Input } from "../components/field.jsx";
import { signIn } from "../lib/session.js";
import { ErrorAlert } from "../components/error-alert.jsx";

export function LoginPage() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [otp, setOtp] = useState("");
  const [needsCode, setNeedsCode] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(username, password, needsCode ? otp : undefined);
    } catch (failure) {
      if (failure.status === 401 && /two-factor/i.test(failure.message)) {
        if (needsCode) setError(failure.describe());
        setNeedsCode(true);
      } else {
        setError(failure.describe ? failure.describe() : String(failure));
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="login" aria-labelledby="login-title">
      <h1 id="login-title">Sign in to Meadowlark</h1>
      <form onSubmit={submit} class="card form">
        <Input label="Login" autocomplete="username" required value={username} onValue={setUsername} />
        <Input
          label="Password"
          type="password"
          autocomplete="current-password"
          required
          value={password}
          onValue={setPassword}
        />
        {needsCode && (
          <Input
            label="Two-factor code"
            hint="The 6-digit code from your authenticator app, or a recovery code."
            autocomplete="one-time-code"
            inputMode="numeric"
            required
            autoFocus
            value={otp}
            onValue={setOtp}
          />
        )}
        <ErrorAlert error={error} />
        <button type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </section>
  );
}
