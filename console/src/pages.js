// The console's pages. To add one: write src/pages/NAME.jsx exporting a component that
// takes the route's params as props, and add an entry here. `nav` puts it in the menu;
// `permission` (a catalog permission name) hides it from users who lack it.
import { DevicePage } from "./pages/device.jsx";
import { DevicesPage } from "./pages/devices.jsx";

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
];

/** Where a signed-in user lands: the first menu page they may open. */
export const HOME = "/devices";
