#!/usr/bin/env node
// Parse LogQL expressions with Grafana's own grammar (@grafana/lezer-logql) and report every
// error node of the syntax tree.
//
// Input (standard input, or the files named as arguments): a JSON array of
//   {"id": "where the expression comes from", "expr": "<LogQL>"}
// Output (standard output): a JSON array of {"id", "expr", "errors": [{"from", "to", "near"}]}
// for the expressions that have errors.  Exit status: 0 when none has, 1 when some have,
// 2 on bad input.
//
// Grafana's template variables are not LogQL: before parsing, interval variables
// ($__auto, $__interval, $__rate_interval, $__range) become "1m", $__range_s and similar
// become "60", and any other variable ($service, ${env}, ${env:regex}) becomes "var".
// The grammar only checks syntax: forms that Loki rejects at validation (for example a `by`
// directly on sum_over_time) are caught by the Python tests, not here.

"use strict";

const fs = require("fs");
const { parser } = require("@grafana/lezer-logql");

function substituteVariables(expr) {
  return expr
    .replace(/\$\{?__(auto|interval|rate_interval|range)\}?(?![A-Za-z0-9_])/g, "1m")
    .replace(/\$\{?__[A-Za-z_]+_(s|ms)\}?(?![A-Za-z0-9_])/g, "60")
    .replace(/\$\{[A-Za-z_][A-Za-z0-9_]*(:[A-Za-z]+)?\}/g, "var")
    .replace(/\$[A-Za-z_][A-Za-z0-9_]*/g, "var");
}

function errorsOf(expr) {
  const text = substituteVariables(expr);
  const tree = parser.parse(text);
  const errors = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) {
        errors.push({
          from: node.from,
          to: node.to,
          near: text.slice(Math.max(0, node.from - 20), node.to + 20),
        });
      }
    },
  });
  return errors;
}

function readInputs() {
  const sources = process.argv.slice(2);
  const texts = sources.length ? sources.map((f) => fs.readFileSync(f, "utf8")) : [fs.readFileSync(0, "utf8")];
  const items = [];
  for (const text of texts) {
    const parsed = JSON.parse(text);
    if (!Array.isArray(parsed)) {
      throw new Error("input must be a JSON array of {id, expr}");
    }
    items.push(...parsed);
  }
  return items;
}

function main() {
  let items;
  try {
    items = readInputs();
  } catch (err) {
    process.stderr.write(`check-logql: ${err.message}\n`);
    return 2;
  }
  const failures = [];
  for (const item of items) {
    if (typeof item.expr !== "string" || item.expr.trim() === "") {
      failures.push({ id: item.id, expr: item.expr, errors: [{ from: 0, to: 0, near: "empty expression" }] });
      continue;
    }
    const errors = errorsOf(item.expr);
    if (errors.length) {
      failures.push({ id: item.id, expr: item.expr, errors });
    }
  }
  process.stdout.write(JSON.stringify(failures, null, 2) + "\n");
  process.stderr.write(`check-logql: ${items.length} expressions, ${failures.length} with errors\n`);
  return failures.length ? 1 : 0;
}

process.exitCode = main();
