// LwM2M values for the console: the object tree from the data-model routes, values of
// the Leshan-style node JSON the LwM2M REST routes answer with, and typed write bodies.

/** Permissions of the LwM2M REST routes a resource's buttons call. */
export const PERMISSIONS = {
  read: "lwm2m:GET /api/lwm2m/v1/clients/{ep}/{path}",
  write: "lwm2m:PUT /api/lwm2m/v1/clients/{ep}/{path}",
  execute: "lwm2m:POST /api/lwm2m/v1/clients/{ep}/{path}",
  observe: "lwm2m:POST /api/lwm2m/v1/clients/{ep}/{path}/observe",
  cancel: "lwm2m:DELETE /api/lwm2m/v1/clients/{ep}/{path}/observe",
};

/**
 * Objects > instances > resources. Objects and resource names come from the object model
 * (dataModelDefinition), instances from the registration's object links and from the
 * cache (resourcesData, whose readable paths are "Object.instance.Resource"), values from
 * the cache. Every resource of the model is listed, cached or not.
 */
export function objectTree(definitions, resources, objectLinks = []) {
  const byName = [...definitions].sort((a, b) => b.name.length - a.name.length);
  const instances = new Map(definitions.map((definition) => [definition.id, new Set()]));
  const cached = new Map();
  for (const link of objectLinks) {
    const [objectId, instanceId] = link.url.split("/").filter(Boolean).map(Number);
    if (instances.has(objectId) && Number.isInteger(instanceId)) instances.get(objectId).add(instanceId);
  }
  for (const resource of resources) {
    const definition = byName.find((candidate) => resource.path.startsWith(`${candidate.name}.`));
    if (!definition) continue;
    const instanceId = Number(resource.path.slice(definition.name.length + 1).split(".")[0]);
    if (!Number.isInteger(instanceId)) continue;
    instances.get(definition.id).add(instanceId);
    const value = "Multiple" in resource.value ? resource.value.Multiple.values.join(", ") : resource.value.Single.value;
    cached.set(`/${definition.id}/${instanceId}/${resource.resourceId}`, value);
  }
  return [...definitions]
    .sort((a, b) => a.id - b.id)
    .filter((definition) => instances.get(definition.id).size > 0)
    .map((definition) => ({
      ...definition,
      instances: new Map(
        [...instances.get(definition.id)]
          .sort((a, b) => a - b)
          .map((instanceId) => [
            instanceId,
            definition.resourceDefinitions.map((model) => {
              const path = `/${definition.id}/${instanceId}/${model.id}`;
              return { ...model, path, multiple: model.instanceType === "Multiple", value: cached.get(path) ?? "" };
            }),
          ]),
      ),
    }));
}

/** Display text of a node's value (single or multiple resource). */
export function nodeText(node) {
  if (!node) return "";
  if (node.kind === "multiResource") {
    return Object.entries(node.values)
      .map(([id, value]) => `${id}: ${value}`)
      .join(", ");
  }
  if ("value" in node) return String(node.value);
  return "";
}

/** The resource paths and display texts inside a node read at `path`. */
export function nodeValues(path, node) {
  const found = {};
  const walk = (prefix, current) => {
    if (!current) return;
    if (current.kind === "obj") current.instances.forEach((i) => walk(`${prefix}/${i.id}`, i));
    else if (current.kind === "instance") current.resources.forEach((r) => walk(`${prefix}/${r.id}`, r));
    else found[prefix] = nodeText(current);
  };
  walk(`/${path.split("/").filter(Boolean).join("/")}`, node);
  return found;
}

/** An enumeration in the model's range ("a,b,c" or "a|b|c"), else null. */
export function enumeration(range) {
  if (!range || !/[,|]/.test(range) || range.includes("..")) return null;
  const values = range.split(/[,|]/).map((value) => value.trim()).filter(Boolean);
  return values.length > 1 && values.length <= 64 ? values : null;
}

/** { min, max } of a numeric range "a..b", else {}. */
export function bounds(range) {
  const found = /^\s*(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)\s*$/.exec(range ?? "");
  return found ? { min: found[1], max: found[2] } : {};
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * The JSON value to write for a resource of model type `type` from the form's raw value,
 * or throws an Error with a message for the user.
 */
export function writeValue(type, raw, opaqueEncoding = "hex") {
  switch (type) {
    case "Boolean":
      return Boolean(raw);
    case "Integer":
    case "UnsignedInteger": {
      const value = Number(raw);
      if (raw === "" || !Number.isInteger(value)) throw new Error("Enter a whole number.");
      if (type === "UnsignedInteger" && value < 0) throw new Error("Enter a number of 0 or more.");
      return value;
    }
    case "Float": {
      const value = Number(raw);
      if (raw === "" || !Number.isFinite(value)) throw new Error("Enter a number.");
      return value;
    }
    case "Time": {
      const value = new Date(raw);
      if (!raw || Number.isNaN(value.getTime())) throw new Error("Enter a date and time.");
      return value.toISOString();
    }
    case "Opaque": {
      const text = raw.replace(/\s+/g, "");
      const valid = opaqueEncoding === "hex" ? HEX.test(text) : BASE64.test(text);
      if (!valid) throw new Error(opaqueEncoding === "hex" ? "Enter hex bytes (e.g. 0a1b)." : "Enter Base64.");
      return opaqueEncoding === "hex" ? text.toLowerCase() : text;
    }
    case "Objlnk":
      if (!/^\d+:\d+$/.test(raw.trim())) throw new Error("Enter an object link like 3:0.");
      return raw.trim();
    default:
      return raw;
  }
}

/** The form's starting value for a resource's current display text. */
export function formValue(type, text) {
  if (type === "Boolean") return text === "true";
  if (type === "Time" && text) {
    const date = new Date(text);
    if (Number.isNaN(date.getTime())) return "";
    const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
    return local.toISOString().slice(0, 19);
  }
  return text ?? "";
}
