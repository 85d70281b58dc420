// Writes schemas/<file>.schema.json and the README's config table from the zod config schemas
// (packages/protocol/src/config-docs.ts). Run after changing a config schema: `pnpm run schemas`.
import { readFileSync, writeFileSync } from "node:fs";
import {
  CONFIG_FILES,
  type ConfigFile,
  configJsonSchema,
  readmeWithTable,
} from "../packages/protocol/src/config-docs.js";

const root = new URL("../", import.meta.url);
for (const name of Object.keys(CONFIG_FILES) as ConfigFile[]) {
  const file = new URL(`schemas/${name}.schema.json`, root);
  writeFileSync(file, configJsonSchema(name));
  console.log(`wrote ${file.pathname}`);
}
const readme = new URL("README.md", root);
writeFileSync(readme, readmeWithTable(readFileSync(readme, "utf8")));
console.log(`wrote the config table in ${readme.pathname}`);
