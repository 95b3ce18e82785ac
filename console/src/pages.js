// The console's pages. To add one: write src/pages/NAME.jsx exporting a component that
// takes the route's params as props, and add an entry here. `nav` puts it in the menu;
// `permission` (a catalog permission name) hides it from users who lack it.
import { DevicePage } from "./pages/device.jsx";
import { DevicesPage } from "./pages/devices.jsx";
import { DomainsPage } from "./pages/domains.jsx";
import { MonitoringPage } from "./pages/monitoring.jsx";
import { RolesPage } from "./pages/roles.jsx";
import { TaskPage } from "./pages/task.jsx";
import { TasksPage } from "./pages/tasks.jsx";
import { ThingPage } from "./pages/thing.jsx";
import { ThingsPage } from "./pages/things.jsx";
import { UsersPage } from "./pages/users.jsx";

export const pages = [
  {
    path: "/devices",
    title: "Devices",
    nav: true,
    permission: "GET devices/find/details",
    component: DevicesPage,
  },
  {
    path: "/devices/:id",
    title: "Device",
    permission: "GET devices/{id}",
    component: DevicePage,
  },
  { path: "/tasks", title: "Tasks", nav: true, permission: "GET tasks", component: TasksPage },
  { path: "/tasks/:id", title: "Task", permission: "GET tasks/{id}", component: TaskPage },
  {
    path: "/monitoring",
    title: "Monitoring",
    nav: true,
    permission: "GET deviceMonitoring/{data_deviceId}/resourceUrl/{lwm2mUrl}",
    component: MonitoringPage,
  },
  { path: "/things", title: "Things", nav: true, permission: "console:GET /things", component: ThingsPage },
  { path: "/things/:id", title: "Thing", permission: "console:GET /thing/{ThingId}", component: ThingPage },
  { path: "/users", title: "Users", nav: true, permission: "admin:GET /api/admin/users", component: UsersPage },
  { path: "/domains", title: "Domains", nav: true, permission: "GET domains", component: DomainsPage },
  { path: "/roles", title: "Roles", nav: true, permission: "admin:GET /api/admin/roles", component: RolesPage },
];

/** Where a signed-in user lands: the first menu page they may open. */
export const HOME = "/devices";
