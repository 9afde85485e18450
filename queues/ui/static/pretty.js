// JSON as people lay it out by hand: two-space indents, short objects and lists kept on one line,
// long lists of plain values filled across lines.

import { ExactNumber } from "./common.js";

const LINE_WIDTH = 76;

function isLeaf(value) {
  return value === null || typeof value !== "object" || value instanceof ExactNumber;
}

/** JSON on one line, spaced as people write it. */
function flat(value) {
  if (value instanceof ExactNumber) return value.source;
  if (isLeaf(value)) return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(flat).join(", ")}]`;
  return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${flat(v)}`).join(", ")}}`;
}

/** Items as lines of at most LINE_WIDTH characters, as many on a line as fit. */
function filled(items, indent) {
  const lines = [];
  let line = "";
  for (const item of items) {
    if (line && line.length + item.length + 2 > LINE_WIDTH) {
      lines.push(`${line},`);
      line = "";
    }
    line = line ? `${line}, ${item}` : indent + item;
  }
  return [...lines, line];
}

/** JSON indented by two spaces; below the top, an object or list that fits on the rest of its line stays on it. */
export function pretty(value, indent = "", column = 0) {
  const oneLine = flat(value);
  const empty = isLeaf(value) || Object.keys(value).length === 0;
  if (empty || (indent && column + oneLine.length <= LINE_WIDTH)) return oneLine;
  const inner = `${indent}  `;
  let lines;
  if (Array.isArray(value)) {
    const simple = value.every(isLeaf);
    lines = simple
      ? filled(value.map(flat), inner)
      : value.map((v, i) => inner + pretty(v, inner, inner.length) + (i < value.length - 1 ? "," : ""));
  } else {
    lines = Object.entries(value).map(([k, v], i, all) => {
      const key = `${inner}${JSON.stringify(k)}: `;
      return key + pretty(v, inner, key.length) + (i < all.length - 1 ? "," : "");
    });
  }
  const [open, close] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  return `${open}\n${lines.join("\n")}\n${indent}${close}`;
}
