// The web console in a real browser (Debian's chromium, driven by playwright-core), against
// a running `meadowlark serve` with a registered simulated device. Run by
// tests/e2e/test_console_browser.py, which passes everything in the environment:
//   CONSOLE_URL, ADMIN_LOGIN, ADMIN_PASSWORD, OTHER_LOGIN, OTHER_PASSWORD, OTHER_OTP (a current
//   two-factor code: the other user has 2FA on), VIEWER_LOGIN, VIEWER_PASSWORD (read-only
//   permissions), DEVICE_ENDPOINT, DEVICE_GROUP (its group),
//   ARTIFACTS (screenshot folder), CHROMIUM (executable).
// Prints one line per step; exits non-zero at the first failure.
import { createInterface } from "node:readline";
import { BASE, PHONE, check, env, newPage, runInChromium, shot, signIn, step, submitLogin } from "./browser.mjs";

const ENDPOINT = env("DEVICE_ENDPOINT");

async function apiToken(login, password) {
  const response = await fetch(`${BASE}/api/auth/oauth_password`, {
    method: "POST",
    body: new URLSearchParams({ grant_type: "password", username: login, password }),
  });
  check(response.status === 201, `password grant for ${login}: ${response.status}`);
  return (await response.json()).access_token;
}

async function searchEndpoint(page) {
  await page.getByLabel("Search criteria").fill(`properties.endpointName eq '${ENDPOINT}'`);
  await page.getByRole("button", { name: "Search", exact: true }).click();
  await page.waitForURL(/\?q=/);
}

async function groupFilter(page) {
  await page.getByLabel("In group").selectOption(env("DEVICE_GROUP"));
  await page.waitForURL(/directGroups/);
  const row = page.locator("tr", { has: page.getByRole("link", { name: ENDPOINT }) });
  await row.getByRole("listitem").filter({ hasText: env("DEVICE_GROUP") }).waitFor();
  const criteria = `directGroups eq '${env("DEVICE_GROUP")}'`;
  await page.waitForFunction(
    (expected) => document.querySelector("form.search input")?.value === expected,
    criteria,
  );
  step(`devices: the group filter finds the device in ${env("DEVICE_GROUP")}`);
  await page.getByLabel("Search criteria").fill("properties.endpointName eq 'no-such-device'");
  await page.getByRole("button", { name: "Search", exact: true }).click();
  await page.getByText("No device matches.").waitFor();
  await page.getByLabel("Search criteria").fill("properties.endpointName eq");
  await page.getByRole("button", { name: "Search", exact: true }).click();
  await page.locator(".form-error").filter({ hasText: /value|expected/i }).waitFor();
  step("devices: a search that matches nothing lists nothing; a malformed one shows the API's error");
}

async function devicesPage(page) {
  await searchEndpoint(page);
  const link = page.getByRole("link", { name: ENDPOINT });
  await link.waitFor();
  const row = page.locator("tr", { has: link });
  await row.locator('[data-status="online"]').waitFor();
  step("devices: found the device, online");
}

async function openDevice(page) {
  await page.getByRole("link", { name: ENDPOINT }).click();
  await page.getByRole("heading", { name: ENDPOINT, level: 1 }).waitFor();
  await page.locator('li.resource[data-path="/3/0/0"]').waitFor();
  const objects = await page.locator("details.object > summary").allInnerTexts();
  check(objects.some((text) => text.startsWith("Device")), `object names: ${objects}`);
  check(objects.some((text) => text.startsWith("Temperature")), `object names: ${objects}`);
  step(`device page: object tree ${objects.map((t) => t.split(" ")[0]).join(", ")}`);
}

const resource = (page, path) => page.locator(`li.resource[data-path="${path}"]`);

async function readResource(page) {
  const row = resource(page, "/3/0/0");
  await row.getByRole("button", { name: "Read Manufacturer" }).click();
  await row.locator('[data-testid="value"]').filter({ hasText: "Meadowlark" }).waitFor();
  step("read /3/0/0: Meadowlark");
}

async function writeResource(page, token) {
  const row = resource(page, "/3/0/15");
  await row.getByRole("button", { name: "Write Timezone" }).click();
  await row.getByLabel("New value of Timezone").fill("America/Chicago");
  await row.getByRole("button", { name: "Write", exact: true }).click();
  await page.getByText("Wrote Timezone (/3/0/15).").waitFor();
  const response = await fetch(`${BASE}/api/lwm2m/v1/clients/${encodeURIComponent(ENDPOINT)}/3/0/15`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  const body = await response.json();
  check(body.content?.value === "America/Chicago", `REST read after the write: ${JSON.stringify(body)}`);
  step("wrote /3/0/15 = America/Chicago; REST read confirms");

  // A typed control: the Current Time (Time) form is a datetime-local input.
  const clock = resource(page, "/3/0/13");
  await clock.getByRole("button", { name: "Write Current Time" }).click();
  const type = await clock.getByLabel("New value of Current Time").getAttribute("type");
  check(type === "datetime-local", `Time resource input type ${type}`);
  await clock.getByRole("button", { name: "Cancel" }).click();

  // Opaque: hex or Base64, chosen by the user.
  const blob = resource(page, "/5/0/0");
  await blob.getByRole("button", { name: "Write Package" }).click();
  const encodings = await blob.getByLabel("Encoding").locator("option").allInnerTexts();
  check(encodings.join() === "Hex,Base64", `opaque encodings ${encodings}`);
  await blob.getByLabel("New value of Package").fill("zz");
  await blob.getByRole("button", { name: "Write", exact: true }).click();
  await blob.getByText("Enter hex bytes").waitFor(); // refused in the page, nothing sent
  await blob.getByRole("button", { name: "Cancel" }).click();
  step("typed forms: Time is datetime-local, Opaque takes hex or Base64 and checks it");
}

async function observeResource(page) {
  const row = resource(page, "/3303/0/5700");
  await row.getByRole("button", { name: "Observe Sensor Value" }).click();
  await row.getByRole("button", { name: "Stop observing Sensor Value" }).waitFor();
  // The test's device thread moves the temperature to 40 and above once it is observed.
  await row.locator('[data-testid="value"]').filter({ hasText: /^4\d(\.\d+)?/ }).waitFor();
  await page.locator(".log li", { hasText: "NOTIFICATION" }).first().waitFor();
  const value = await row.locator('[data-testid="value"]').innerText();
  step(`observe /3303/0/5700: live notification arrived (${value})`);
  await row.scrollIntoViewIfNeeded();
  await shot(page, "device-observed", { fullPage: false });
}

async function keyboard(page) {
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.textContent);
  check(focused === "Skip to content", `first Tab focuses ${focused}`);
}

async function otherDomainSeesNothing(browser) {
  const { context, page } = await newPage(browser);
  await signIn(page, env("OTHER_LOGIN"), env("OTHER_PASSWORD"), env("OTHER_OTP"));
  await page.getByText("No device matches.").waitFor();
  check((await page.getByRole("link", { name: ENDPOINT }).count()) === 0, "device listed for the other domain");
  await searchEndpoint(page);
  await page.getByText("No device matches.").waitFor();
  await shot(page, "other-domain-devices");
  await page.goto(`${BASE}/console/devices/${encodeURIComponent(ENDPOINT)}`);
  // A reload forgets the in-memory token: sign in again, the deep link is kept.
  await submitLogin(page, env("OTHER_LOGIN"), env("OTHER_PASSWORD"), env("OTHER_OTP"));
  await page.getByRole("alert").filter({ hasText: /not found|no such|does not exist/i }).first().waitFor();
  await shot(page, "other-domain-device");
  step("other domain: the device is neither listed nor readable");
  await context.close();
}

async function phone(browser) {
  const { context, page } = await newPage(browser, { viewport: PHONE, isMobile: true, hasTouch: true });
  await page.goto(`${BASE}/console/`);
  await page.getByRole("heading", { name: "Sign in to Meadowlark" }).waitFor();
  await shot(page, "login");
  await signIn(page, env("ADMIN_LOGIN"), env("ADMIN_PASSWORD"));
  await devicesPage(page);
  await shot(page, "devices");
  await openDevice(page);
  await shot(page, "device", { fullPage: false });
  await resource(page, "/3/0/15").scrollIntoViewIfNeeded();
  await resource(page, "/3/0/15").getByRole("button", { name: "Write Timezone" }).click();
  await shot(page, "device-write", { fullPage: false });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the device page is ${overflow}px wider than the phone`);
  step("phone width: no horizontal overflow");
  await context.close();
}

const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Ask the pytest driver to act on the device ("@deregister"); resolves when it is done. */
async function askDriver(action) {
  console.log(`@${action}`);
  const { value } = await answers.next();
  check(value === "done", `driver answered ${value} to ${action}`);
}

async function viewerSeesOnlyReadButtons(browser) {
  const { context, page } = await newPage(browser);
  await signIn(page, env("VIEWER_LOGIN"), env("VIEWER_PASSWORD"));
  await devicesPage(page);
  await openDevice(page);
  const buttons = await page.locator("li.resource button:visible").allInnerTexts();
  const kinds = [...new Set(buttons)].sort();
  check(kinds.join() === "Read", `a read-only user sees the buttons ${kinds}`);
  check((await page.getByRole("button", { name: "Read Device instance 0" }).count()) === 1, "no Read all button");
  step("read-only user: Read buttons only (no Write, Execute, Observe)");
  await context.close();
}

async function liveStatus(browser) {
  const { context, page } = await newPage(browser);
  await signIn(page, env("ADMIN_LOGIN"), env("ADMIN_PASSWORD"));
  await devicesPage(page);
  await page.locator(".live[data-state=open]").waitFor();
  await askDriver("deregister");
  const row = page.locator("tr", { has: page.getByRole("link", { name: ENDPOINT }) });
  await row.locator('[data-status="offline"]').waitFor();
  step("live status: the device deregistered and the open page shows it offline");
  await context.close();
}

async function checks(browser) {
  const { context, page } = await newPage(browser);
  const consoleErrors = [];
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy|Refused to/i.test(message.text())) {
      consoleErrors.push(message.text());
    }
  });
  const refreshes = [];
  page.on("response", (response) => {
    if (response.url().endsWith("/api/auth/refresh")) refreshes.push(response.status());
  });
  let consoleToken = null; // the bearer token the page uses (it lives in the page's memory)
  page.on("request", (request) => {
    const header = request.headers().authorization;
    if (header?.startsWith("Bearer ")) consoleToken = header.slice(7);
  });
  await page.goto(`${BASE}/console/`);
  await page.getByRole("heading", { name: "Sign in to Meadowlark" }).waitFor();
  await keyboard(page);
  await shot(page, "login");
  await signIn(page, env("ADMIN_LOGIN"), env("ADMIN_PASSWORD"));
  await groupFilter(page);
  await devicesPage(page);
  await shot(page, "devices");
  await openDevice(page);
  await readResource(page);
  await writeResource(page, await apiToken(env("ADMIN_LOGIN"), env("ADMIN_PASSWORD")));
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, "device", { fullPage: false });
  await observeResource(page);
  // The page refreshes half-way through the token's life: a quick run may get here first.
  if (refreshes.length === 0) await page.waitForResponse((response) => response.url().endsWith("/api/auth/refresh"));
  check(refreshes.length > 0 && refreshes.every((status) => status === 200), `refreshes: ${refreshes}`);
  step(`the token was refreshed ${refreshes.length} time(s) before expiring`);
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Sign in to Meadowlark" }).waitFor();
  check(consoleToken, "no bearer token seen in the console's requests");
  let status = 0;
  for (let attempt = 0; attempt < 30 && status !== 401; attempt++) {
    if (attempt) await new Promise((resolve) => setTimeout(resolve, 100));
    status = (await fetch(`${BASE}/api/auth/me`, { headers: { Authorization: `Bearer ${consoleToken}` } })).status;
  }
  check(status === 401, `the console's token after logout: ${status}`);
  step("logged out: the console's token is revoked");
  check(consoleErrors.length === 0, `page errors: ${consoleErrors.join("; ")}`);
  await context.close();

  await phone(browser);
  await otherDomainSeesNothing(browser);
  await viewerSeesOnlyReadButtons(browser);
  await liveStatus(browser);
}

runInChromium(checks, "failure", "all console checks passed");
