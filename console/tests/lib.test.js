// Unit tests of the console's pure helpers: `npm test` (node's own test runner), also run
// by tests/e2e/test_console_browser.py.
import assert from "node:assert/strict";
import { test } from "node:test";
import { addCondition } from "../src/lib/criteria.js";
import { parseEvents } from "../src/lib/api.js";
import { bounds, enumeration, nodeValues, objectTree, writeValue } from "../src/lib/lwm2m.js";

test("writeValue types the form's text by the model's type", () => {
  assert.equal(writeValue("Boolean", true), true);
  assert.equal(writeValue("Integer", "-12"), -12);
  assert.throws(() => writeValue("Integer", "1.5"), /whole number/);
  assert.throws(() => writeValue("UnsignedInteger", "-1"), /0 or more/);
  assert.equal(writeValue("Float", "2.25"), 2.25);
  assert.throws(() => writeValue("Float", ""), /number/);
  assert.equal(writeValue("Time", "2026-01-02T03:04:05Z"), "2026-01-02T03:04:05.000Z");
  assert.throws(() => writeValue("Time", "yesterday"), /date and time/);
  assert.equal(writeValue("Opaque", "0A 1b", "hex"), "0a1b");
  assert.throws(() => writeValue("Opaque", "abc", "hex"), /hex/);
  assert.equal(writeValue("Opaque", "AQID", "base64"), "AQID");
  assert.throws(() => writeValue("Opaque", "A", "base64"), /Base64/);
  assert.equal(writeValue("Objlnk", " 3:0 "), "3:0");
  assert.throws(() => writeValue("Objlnk", "3"), /object link/);
  assert.equal(writeValue("String", "it's"), "it's");
});

test("enumeration and bounds come from the model's range", () => {
  assert.deepEqual(enumeration("U,UQ,S"), ["U", "UQ", "S"]);
  assert.equal(enumeration("0..6"), null);
  assert.equal(enumeration(""), null);
  assert.deepEqual(bounds("1..65534"), { min: "1", max: "65534" });
  assert.deepEqual(bounds("-40.5..85"), { min: "-40.5", max: "85" });
  assert.deepEqual(bounds("The possible values are listed"), {});
});

const definitions = [
  {
    id: 3,
    name: "Device",
    objectVersion: "1.2",
    instanceType: "Single",
    resourceDefinitions: [
      { id: 0, name: "Manufacturer", operations: ["Read"], instanceType: "Single", type: "String" },
      { id: 6, name: "Available Power Sources", operations: ["Read"], instanceType: "Multiple", type: "Integer" },
    ],
  },
  {
    id: 3303,
    name: "Temperature",
    objectVersion: "1.1",
    instanceType: "Multiple",
    resourceDefinitions: [{ id: 5700, name: "Sensor Value", operations: ["Read"], instanceType: "Single", type: "Float" }],
  },
  { id: 9, name: "Device Ext", objectVersion: "1.0", instanceType: "Single", resourceDefinitions: [] },
];

test("objectTree: model names, instances from links and cache, cached values", () => {
  const cached = [
    { path: "Device.0.Manufacturer", resourceId: 0, value: { Single: { value: "Acme" } } },
    { path: "Device.0.Available Power Sources", resourceId: 6, value: { Multiple: { values: ["1", "5"] } } },
  ];
  const tree = objectTree(definitions, cached, [{ url: "/3303/1" }, { url: "/3303/0" }, { url: "/3" }]);
  assert.deepEqual(
    tree.map((object) => [object.id, [...object.instances.keys()]]),
    [
      [3, [0]],
      [3303, [0, 1]],
    ],
  );
  const device = tree[0].instances.get(0);
  assert.deepEqual(
    device.map((resource) => [resource.path, resource.name, resource.value, resource.multiple]),
    [
      ["/3/0/0", "Manufacturer", "Acme", false],
      ["/3/0/6", "Available Power Sources", "1, 5", true],
    ],
  );
  assert.equal(tree[1].instances.get(1)[0].value, "");
});

test("nodeValues flattens a read node to resource paths", () => {
  const instance = {
    id: 0,
    kind: "instance",
    resources: [
      { id: 0, kind: "singleResource", type: "string", value: "Acme" },
      { id: 6, kind: "multiResource", type: "integer", values: { 0: 1, 1: 5 } },
    ],
  };
  assert.deepEqual(nodeValues("/3/0", instance), { "/3/0/0": "Acme", "/3/0/6": "0: 1, 1: 5" });
  assert.deepEqual(nodeValues("/3303/0/5700", { id: 5700, kind: "singleResource", value: 21.5 }), {
    "/3303/0/5700": "21.5",
  });
});

test("parseEvents dispatches complete events and keeps the rest", () => {
  const seen = [];
  const rest = parseEvents(
    ': connected\n\nevent: NOTIFICATION\ndata: {"ep":"a"}\n\nevent: AWAKE\r\ndata: {"ep":"b"}\r\n\r\nevent: SLEEPING\ndata: {"ep',
    (kind, data) => seen.push([kind, data]),
  );
  assert.deepEqual(seen, [
    ["NOTIFICATION", { ep: "a" }],
    ["AWAKE", { ep: "b" }],
  ]);
  assert.equal(rest, 'event: SLEEPING\ndata: {"ep');
});

test("addCondition joins with and, bracketing an or", () => {
  assert.equal(addCondition("", "id eq 'a'"), "id eq 'a'");
  assert.equal(addCondition("id eq 'a'", "domain eq '/root/'"), "id eq 'a' and domain eq '/root/'");
  assert.equal(addCondition("id eq 'a' or id eq 'b'", "x eq 1"), "(id eq 'a' or id eq 'b') and x eq 1");
});
