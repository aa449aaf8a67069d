// A small JSON Schema check against the API's own /openapi.json: the spec editor's errors
// before anything is sent (types, bounds, enums, required and unknown fields, the tagged
// unions of `problem` and `hypergradient`). Checks across fields stay the server's.
import { getJSON } from "./api.js";

let components = null;

/** The OpenAPI document's schemas, fetched once. */
export async function schemas() {
  if (!components) components = (await getJSON("/openapi.json")).components.schemas;
  return components;
}

function deref(schema, all) {
  while (schema && schema.$ref) schema = all[schema.$ref.split("/").pop()];
  return schema || {};
}

function typeOk(type, v) {
  switch (type) {
    case "object": return v !== null && typeof v === "object" && !Array.isArray(v);
    case "array": return Array.isArray(v);
    case "string": return typeof v === "string";
    case "integer": return Number.isInteger(v);
    case "number": return typeof v === "number" && Number.isFinite(v);
    case "boolean": return typeof v === "boolean";
    case "null": return v === null;
    default: return true;
  }
}

/** Every error of `value` against `schema`: [{field: "hypergradient.K", message}]. */
export function validate(schema, value, all, path = []) {
  schema = deref(schema, all);
  const at = path.join(".") || "(spec)";
  const errs = [];
  const alts = schema.oneOf || schema.anyOf;
  if (alts) {
    const d = schema.discriminator;
    if (d && value && typeof value === "object") {
      const tag = value[d.propertyName];
      const ref = d.mapping[tag];
      if (!ref) {
        return [{ field: [...path, d.propertyName].join("."),
          message: `must be one of ${Object.keys(d.mapping).join(", ")}, got ${JSON.stringify(tag)}` }];
      }
      return validate({ $ref: ref }, value, all, path);
    }
    const each = alts.map((s) => validate(s, value, all, path));
    if (each.some((e) => !e.length)) return [];
    return each.sort((a, b) => a.length - b.length)[0];
  }
  if (schema.type && !typeOk(schema.type, value)) {
    return [{ field: at, message: `must be ${schema.type}, got ${JSON.stringify(value)}` }];
  }
  if ("const" in schema && value !== schema.const) {
    errs.push({ field: at, message: `must be ${JSON.stringify(schema.const)}` });
  }
  if (schema.enum && !schema.enum.includes(value)) {
    errs.push({ field: at, message: `must be one of ${schema.enum.join(", ")}, got ${JSON.stringify(value)}` });
  }
  if (typeof value === "number") {
    if ("minimum" in schema && value < schema.minimum) errs.push({ field: at, message: `must be >= ${schema.minimum}, got ${value}` });
    if ("maximum" in schema && value > schema.maximum) errs.push({ field: at, message: `must be <= ${schema.maximum}, got ${value}` });
    if ("exclusiveMinimum" in schema && value <= schema.exclusiveMinimum) errs.push({ field: at, message: `must be > ${schema.exclusiveMinimum}, got ${value}` });
    if ("exclusiveMaximum" in schema && value >= schema.exclusiveMaximum) errs.push({ field: at, message: `must be < ${schema.exclusiveMaximum}, got ${value}` });
  }
  if (typeof value === "string") {
    if ("minLength" in schema && value.length < schema.minLength) errs.push({ field: at, message: `must have at least ${schema.minLength} characters` });
    if ("maxLength" in schema && value.length > schema.maxLength) errs.push({ field: at, message: `must have at most ${schema.maxLength} characters` });
    if (schema.pattern && !new RegExp(schema.pattern).test(value)) errs.push({ field: at, message: `must match ${schema.pattern}, got ${JSON.stringify(value)}` });
  }
  if (Array.isArray(value)) {
    if ("minItems" in schema && value.length < schema.minItems) errs.push({ field: at, message: `must have at least ${schema.minItems} items` });
    if ("maxItems" in schema && value.length > schema.maxItems) errs.push({ field: at, message: `must have at most ${schema.maxItems} items` });
    if (schema.items) value.forEach((v, i) => errs.push(...validate(schema.items, v, all, [...path, String(i)])));
  }
  if (schema.type === "object" && typeOk("object", value)) {
    const props = schema.properties || {};
    for (const k of schema.required || []) {
      if (!(k in value)) errs.push({ field: [...path, k].join("."), message: "is required" });
    }
    for (const [k, v] of Object.entries(value)) {
      if (k in props) errs.push(...validate(props[k], v, all, [...path, k]));
      else if (schema.additionalProperties === false) errs.push({ field: [...path, k].join("."), message: "is not a field of the spec" });
    }
  }
  return errs;
}

/** The dotted paths of `spec`'s scalar fields: what a sweep can vary. */
export function leafPaths(spec, prefix = []) {
  const out = [];
  for (const [k, v] of Object.entries(spec || {})) {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) out.push(...leafPaths(v, [...prefix, k]));
    else if (k !== "name" && k !== "kind") out.push([...prefix, k].join("."));
  }
  return out;
}
