// node validate.mjs FILE: prints {"valid": bool, "errors": [...]} and exits 1 when invalid.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const file = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
// Severity 0 is an error; warnings and hints are reported, not fatal.
const errors = diagnostics.filter((d) => d.severity === 0);
const report = {
  valid: Boolean(document) && errors.length === 0,
  version: document ? document.version() : null,
  channels: document ? document.channels().all().map((c) => c.id()) : [],
  errors: errors.map((d) => `${d.path.join(".")}: ${d.message}`),
  warnings: diagnostics.filter((d) => d.severity === 1).map((d) => `${d.path.join(".")}: ${d.message}`),
};
console.log(JSON.stringify(report));
process.exit(report.valid ? 0 : 1);
