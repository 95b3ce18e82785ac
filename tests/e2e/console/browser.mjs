// What both console browser scripts share: the environment, step logging, checks, screenshots,
// signing in, and running chromium (playwright-core) with a screenshot of the last page on failure.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
export const BASE = env("CONSOLE_URL");
const ARTIFACTS = env("ARTIFACTS");
const TIMEOUT = 15000;
export const WIDE = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

mkdirSync(ARTIFACTS, { recursive: true });
const started = Date.now();
export const step = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

let lastPage = null; // screenshot of it on failure

export async function shot(page, name, { fullPage = true } = {}) {
  const size = page.viewportSize();
  const file = join(ARTIFACTS, `${name}-${size.width}.png`);
  await page.screenshot({ path: file, fullPage });
  step(`screenshot ${file}`);
}

/** A page in a new browser context (a fresh session); `options` go to `browser.newContext`. */
export async function newPage(browser, options = { viewport: WIDE }) {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  lastPage = page;
  return { context, page };
}

/** Fill the login form; with `otp`, the account has 2FA on: the code field must appear. */
export async function submitLogin(page, login, password, otp) {
  await page.getByLabel("Login").fill(login);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  if (otp) {
    await page.getByLabel("Two-factor code").waitFor();
    await shot(page, "login-2fa", { fullPage: false });
    await page.getByLabel("Two-factor code").fill(otp);
    await page.getByRole("button", { name: "Sign in" }).click();
  }
}

export async function signIn(page, login, password, otp) {
  await page.goto(`${BASE}/console/`);
  await page.getByRole("heading", { name: "Sign in to Meadowlark" }).waitFor();
  await submitLogin(page, login, password, otp);
  await page.getByRole("heading", { name: "Devices" }).waitFor();
  step(`signed in as ${login}${otp ? " with a two-factor code" : ""}`);
}

/**
 * Launch chromium, run `checks(browser)`, close it; on failure save `failureShot`.png of the
 * last page opened and exit non-zero. Logs `done` and exits 0 when every check passed.
 */
export async function runInChromium(checks, failureShot, done) {
  try {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    });
    try {
      await checks(browser);
    } catch (error) {
      await lastPage?.screenshot({ path: join(ARTIFACTS, `${failureShot}.png`), fullPage: true }).catch(() => {});
      throw error;
    } finally {
      await browser.close();
    }
  } catch (error) {
    console.error(`FAILED: ${error.stack ?? error}`);
    process.exit(1);
  }
  step(done);
  process.exit(0); // stdin may stay open
}
