import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONFIG_FILES, type ConfigFile, configJsonSchema, readmeWithTable } from "./config-docs.js";

const root = new URL("../../../", import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), "utf8");
const NAMES = Object.keys(CONFIG_FILES) as ConfigFile[];

describe("generated config docs (`pnpm run schemas` rewrites them)", () => {
  it.each(NAMES)("schemas/%s.schema.json is what the zod schema gives", (name) => {
    expect(read(`schemas/${name}.schema.json`)).toBe(configJsonSchema(name));
  });

  it("README.md's config table is what the zod schemas give", () => {
    const readme = read("README.md");
    expect(readme).toBe(readmeWithTable(readme));
  });

  it.each(NAMES)("configs/%s.json names its schema in $schema and is valid (the key is ignored)", (name) => {
    const sample = JSON.parse(read(`configs/${name}.json`));
    expect(sample.$schema).toBe(`../schemas/${name}.schema.json`);
    const withoutRef = { ...sample };
    delete withoutRef.$schema;
    const schema = CONFIG_FILES[name];
    expect(schema.safeParse(sample).error?.issues).toBeUndefined();
    const { $schema, ...parsed } = schema.parse(sample) as Record<string, unknown>;
    expect($schema).toBe(sample.$schema);
    expect(parsed).toEqual(schema.parse(withoutRef));
  });
});
