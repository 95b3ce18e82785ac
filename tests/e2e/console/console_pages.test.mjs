// The console's tasks, monitoring, admin and Things pages in a real browser (Debian's
// chromium, driven by playwright-core) against a running `meadowlark serve` with a
// registered simulated device. Run by tests/e2e/test_console_pages_browser.py, which
// prepares the data through the API and passes everything in the environment:
//   CONSOLE_URL, ADMIN_LOGIN, ADMIN_PASSWORD, DEVICE_ID, RESOURCE_URL (numeric samples),
//   TEXT_RESOURCE_URL (text samples), MONITORING_NAME,
//   GROUP_ID, THING_ID, THING_NAME, VIEWER_LOGIN, VIEWER_PASSWORD (a user with the
//   view-only Monitor role), ARTIFACTS (screenshot folder), CHROMIUM (executable).
// Prints one line per step; exits non-zero at the first failure.
import { BASE, PHONE, check, env, newPage, runInChromium, shot, signIn, step } from "./browser.mjs";

const DEVICE = env("DEVICE_ID");
const RESOURCE = env("RESOURCE_URL");
const NEW_USER = "console-operator";
const NEW_ROLE = "console-device-readers";
const NEW_DOMAIN = "/root/console-lab/";

const signInAsAdmin = (page) => signIn(page, env("ADMIN_LOGIN"), env("ADMIN_PASSWORD"));

/** Follow an in-app link of the menu (a reload would forget the in-memory token). */
async function menu(page, name) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true }).click();
  await page.getByRole("heading", { name, level: 1 }).waitFor();
}

/** An in-app deep link without a reload: the router follows history changes. */
async function open(page, path) {
  await page.evaluate((target) => {
    window.history.pushState(null, "", `/console${target}`);
    window.dispatchEvent(new PopStateEvent("popstate"));
  }, path);
}

async function noOverflow(page, what) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `${what} is ${overflow}px wider than the phone`);
}

async function tasks(page) {
  await menu(page, "Tasks");
  const form = page.locator("form", { has: page.getByRole("heading", { name: "New task from a template" }) });
  await form.getByLabel("Template").selectOption("readResource");
  await form.getByLabel("Run on").selectOption("device");
  await form.getByLabel("Device id").fill(DEVICE);
  await form.getByLabel("Task name (optional)").fill("console-read-manufacturer");
  await form.getByLabel("Parameter key").fill("/3/0/0");
  await form.getByRole("button", { name: "Create task" }).click();
  await page.getByRole("heading", { name: "console-read-manufacturer", level: 1 }).waitFor();
  step(`task created: ${page.url()}`);
  const summary = page.getByTestId("task-summary");
  await summary.locator('[data-key="completed"] dd').filter({ hasText: /^1$/ }).waitFor();
  await summary.locator('[data-key="successes"] dd').filter({ hasText: /^1$/ }).waitFor();
  const row = page.locator("tr", { has: page.getByRole("link", { name: DEVICE }) });
  await row.locator('[data-status="Success"]').waitFor();
  const values = await row.locator("td", { hasText: "Manufacturer" }).innerText();
  check(values.includes("Meadowlark"), `values read: ${values}`);
  step(`task summary filled in: 1 completed, 1 succeeded (${values.trim()})`);
  await shot(page, "task");

  // The same template on the device's group: the summary counts the group's members.
  await menu(page, "Tasks");
  await form.getByLabel("Template").selectOption("readResource");
  await form.getByLabel("Run on").selectOption("group");
  await form.getByLabel("Group", { exact: true }).selectOption(env("GROUP_ID"));
  await form.getByLabel("Task name (optional)").fill("console-read-model");
  await form.getByLabel("Parameter key").fill("/3/0/1");
  await form.getByRole("button", { name: "Create task" }).click();
  await page.getByRole("heading", { name: "console-read-model", level: 1 }).waitFor();
  await page.getByTestId("task-summary").locator('[data-key="successes"] dd').filter({ hasText: /^1$/ }).waitFor();
  await page.locator("tr", { has: page.getByRole("link", { name: DEVICE }) }).locator('[data-status="Success"]').waitFor();
  check(page.url().includes("/tasks/g%3A"), `group task id in ${page.url()}`);
  step(`group task: its summary filled in for the group's device (${page.url()})`);

  await menu(page, "Tasks");
  await page.getByRole("link", { name: "console-read-manufacturer" }).waitFor();
  await page.getByRole("link", { name: "console-read-model" }).waitFor();
  await shot(page, "tasks");
}

async function monitoring(page) {
  await menu(page, "Monitoring");
  await page.getByLabel("Device id").fill(DEVICE);
  await page.getByLabel("Resource", { exact: true }).fill(RESOURCE);
  await page.getByLabel("Time range").selectOption("1h");
  await page.getByRole("button", { name: "Show" }).click();
  const chart = page.getByTestId("samples-chart");
  await chart.locator("canvas").waitFor();
  const caption = await chart.locator("figcaption").innerText();
  const samples = Number.parseInt(caption.split(": ")[1], 10);
  check(samples >= 5, `chart caption ${caption}`);
  const box = await chart.locator("canvas").boundingBox();
  check(box && box.width > 200 && box.height > 100, `chart canvas ${JSON.stringify(box)}`);
  step(`monitoring chart: ${samples} samples drawn (${Math.round(box.width)}×${Math.round(box.height)})`);

  const switcher = page.getByTestId("monitoring-switch");
  await switcher.locator('[data-enabled="true"]').waitFor();
  await switcher.getByRole("button", { name: "Disable monitoring" }).click();
  await switcher.locator('[data-enabled="false"]').waitFor();
  await switcher.getByRole("button", { name: "Enable monitoring" }).click();
  await switcher.locator('[data-enabled="true"]').waitFor();
  step("monitoring switched off and on again from the page");

  const aggregates = page.getByTestId("aggregates");
  await aggregates.getByLabel("Named monitoring", { exact: true }).waitFor();
  check(
    (await aggregates.getByLabel("Named monitoring", { exact: true }).inputValue()) === env("MONITORING_NAME"),
    "the named monitoring of the resource is chosen",
  );
  await aggregates.getByLabel("Interval", { exact: true }).selectOption("60");
  const counts = aggregates.locator('td[data-label="Count"]');
  await counts.first().waitFor();
  const total = (await counts.allInnerTexts()).reduce((sum, text) => sum + Number(text), 0);
  check(total >= samples, `aggregate counts add up to ${total}, samples ${samples}`);
  const minimum = await aggregates.locator('td[data-label="Min"]').first().innerText();
  check(Number.isFinite(Number(minimum)), `aggregate min ${minimum}`);
  await aggregates.getByTestId("aggregates-chart").locator("canvas").waitFor();
  step(`aggregates: ${await counts.count()} intervals, ${total} samples counted`);
  await shot(page, "monitoring");

  // A text resource: no line to draw; its samples and the count of each value as tables.
  await page.getByLabel("Resource", { exact: true }).fill(env("TEXT_RESOURCE_URL"));
  await page.getByRole("button", { name: "Show" }).click();
  await page.getByText("Text values: shown as a table.").waitFor();
  const valueCounts = page.getByTestId("aggregates").locator('td[data-label="Values (count)"]');
  await valueCounts.first().waitFor();
  const counted = await valueCounts.first().innerText();
  check(/: [1-9]/.test(counted), `textual aggregate ${counted}`);
  check((await page.getByTestId("samples-chart").count()) === 0, "a chart for text values");
  step(`textual aggregates: ${counted.trim()}`);
  await shot(page, "monitoring-text");
}

async function users(page) {
  await menu(page, "Users");
  const form = page.locator("form", { has: page.getByRole("heading", { name: "New user" }) });
  await form.getByLabel("Login").fill(NEW_USER);
  await form.getByLabel("Password", { exact: true }).fill("Operator-Pa55word!");
  await form.getByLabel("Domain").selectOption("/root/");
  await form.getByLabel("Monitor", { exact: true }).check();
  await form.getByRole("button", { name: "Create user" }).click();
  await page.getByText(`User ${NEW_USER} created.`).waitFor();
  const row = page.locator("tr", { has: page.getByRole("cell", { name: NEW_USER, exact: true }) });
  await row.locator('[data-active="true"]').waitFor();
  check((await row.innerText()).includes("Monitor"), "the new user holds the Monitor role");
  await row.getByRole("button", { name: `Disable ${NEW_USER}` }).click();
  await row.locator('[data-active="false"]').waitFor();
  step(`user ${NEW_USER} created with the Monitor role, then disabled`);
  // The server's refusal is shown as it is: the login is taken now.
  await form.getByLabel("Login").fill(NEW_USER);
  await form.getByLabel("Password", { exact: true }).fill("Operator-Pa55word!");
  await form.getByRole("button", { name: "Create user" }).click();
  const refusal = await form.getByRole("alert").innerText();
  check(/exist|taken|conflict/i.test(refusal), `duplicate login answer: ${refusal}`);
  step(`a duplicate login is refused: ${refusal}`);
  await shot(page, "users");
}

async function roles(page) {
  await menu(page, "Roles");
  const form = page.locator("form", { has: page.getByRole("heading", { name: "New role" }) });
  await form.getByLabel("Name", { exact: true }).fill(NEW_ROLE);
  await form.getByLabel("Filter permissions").fill("GET devices");
  await form.getByRole("button", { name: "Choose all shown" }).click();
  const legend = await form.locator("legend").first().innerText();
  await form.getByRole("button", { name: "Create role" }).click();
  const created = page.locator(`details[data-role="${NEW_ROLE}"]`);
  await created.waitFor();
  await created.locator("summary").click();
  await created.getByText("GET devices/find/details", { exact: true }).waitFor();
  const profile = await created.locator("table").innerText();
  check(profile.includes("Devices"), `profile of the new role: ${profile}`);
  step(`role ${NEW_ROLE} created (${legend.trim()})`);
  await shot(page, "roles");
}

async function domains(page) {
  await menu(page, "Domains");
  await page.getByLabel("Domain id").fill(NEW_DOMAIN);
  await page.getByLabel("Description").fill("Created from the console");
  await page.getByRole("button", { name: "Create domain" }).click();
  await page.getByRole("cell", { name: NEW_DOMAIN }).waitFor();
  step(`domain ${NEW_DOMAIN} created`);
  await shot(page, "domains");
}

async function things(page) {
  await menu(page, "Things");
  const name = env("THING_NAME");
  const link = page.getByRole("link", { name, exact: true });
  await link.waitFor();
  const row = page.locator("tr", { has: link });
  await row.locator('[data-state="PROVISIONED"]').waitFor();
  await row.locator('[data-connection="CONNECTED"]').waitFor();
  step("things: the SIM is listed, PROVISIONED and connected");
  await shot(page, "things");
  await link.click();
  await page.getByRole("heading", { name, level: 1 }).waitFor();
  await page.getByRole("button", { name: "Activate" }).click();
  await page.locator('.page-head [data-state="ACTIVE"]').waitFor();
  await page.getByRole("button", { name: "Suspend" }).waitFor();
  step("thing: activated from the page");
  await page.getByRole("button", { name: "Ping" }).click();
  const ping = await page.locator(".ping").innerText();
  check(/1\/1 received/.test(ping), `ping: ${ping}`);
  step(`thing: ${ping}`);
  await page.getByLabel("Message").fill("hello from the console");
  await page.getByRole("button", { name: "Send SMS" }).click();
  await page.getByText(/^SMS sent \(message id /).waitFor();
  step("thing: MT SMS sent");
  await shot(page, "thing");
}

/** A view-only user (Monitor role) sees the pages but none of the buttons that change. */
async function viewOnly(browser) {
  const { context, page } = await newPage(browser);
  await signIn(page, env("VIEWER_LOGIN"), env("VIEWER_PASSWORD"));
  const absent = async (locator, what) => check((await locator.count()) === 0, `the viewer sees ${what}`);
  await menu(page, "Tasks");
  await page.getByRole("link", { name: "console-read-manufacturer" }).waitFor();
  await absent(page.getByRole("heading", { name: "New task from a template" }), "the task form");
  await menu(page, "Users");
  await page.getByRole("cell", { name: NEW_USER, exact: true }).waitFor();
  await absent(page.getByRole("heading", { name: "New user" }), "the user form");
  await absent(page.getByRole("button", { name: /^(Enable|Disable) / }), "enable/disable buttons");
  await menu(page, "Roles");
  await page.locator(`details[data-role="${NEW_ROLE}"]`).waitFor();
  await absent(page.getByRole("heading", { name: "New role" }), "the role form");
  await menu(page, "Domains");
  await page.getByRole("cell", { name: NEW_DOMAIN }).waitFor();
  await absent(page.getByRole("button", { name: "Create domain" }), "the domain form");
  await open(page, `/monitoring?device=${encodeURIComponent(DEVICE)}&url=${encodeURIComponent(RESOURCE)}&range=1h`);
  await page.getByTestId("samples-chart").locator("canvas").waitFor();
  await page.getByTestId("monitoring-switch").locator('[data-enabled="true"]').waitFor();
  await absent(page.getByRole("button", { name: /monitoring$/ }), "the monitoring switch buttons");
  await open(page, `/things/${encodeURIComponent(env("THING_ID"))}`);
  await page.getByRole("heading", { name: env("THING_NAME"), level: 1 }).waitFor();
  await page.getByTestId("usage").waitFor();
  await absent(page.getByRole("button", { name: /^(Activate|Suspend|Retire|Ping|Refresh connection|Send SMS)$/ }), "Thing actions");
  step("view-only user: every page readable, no button that changes anything");
  await context.close();
}

async function phone(browser) {
  const { context, page } = await newPage(browser, { viewport: PHONE, isMobile: true, hasTouch: true });
  await signInAsAdmin(page);
  const visits = [
    ["tasks", "/tasks", "Tasks"],
    ["monitoring", `/monitoring?device=${encodeURIComponent(DEVICE)}&url=${encodeURIComponent(RESOURCE)}&range=1h`, "Monitoring"],
    ["users", "/users", "Users"],
    ["roles", "/roles", "Roles"],
    ["domains", "/domains", "Domains"],
    ["things", "/things", "Things"],
    ["thing", `/things/${encodeURIComponent(env("THING_ID"))}`, env("THING_NAME")],
  ];
  for (const [name, path, heading] of visits) {
    await open(page, path);
    await page.getByRole("heading", { name: heading, level: 1 }).waitFor();
    if (name === "monitoring") await page.getByTestId("samples-chart").locator("canvas").waitFor();
    if (name === "things") await page.locator('[data-connection="CONNECTED"]').first().waitFor();
    await page.waitForLoadState("networkidle");
    await noOverflow(page, `the ${name} page`);
    await shot(page, name);
  }
  await page.getByRole("link", { name: "Tasks", exact: true }).click();
  await page.getByRole("link", { name: "console-read-manufacturer" }).click();
  await page.getByTestId("task-summary").locator('[data-key="completed"] dd').filter({ hasText: /^1$/ }).waitFor();
  await noOverflow(page, "the task page");
  await shot(page, "task");
  step("phone width: every page fits 390 px");
  await context.close();
}

async function checks(browser) {
  const { context, page } = await newPage(browser);
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await signInAsAdmin(page);
  await tasks(page);
  await monitoring(page);
  await users(page);
  await roles(page);
  await domains(page);
  await things(page);
  check(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
  await context.close();
  await viewOnly(browser);
  await phone(browser);
}

runInChromium(checks, "pages-failure", "all console page checks passed");
