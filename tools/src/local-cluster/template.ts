/**
 * The shipped configs under ops/ are templates with `${LLMCHAT_*}`
 * placeholders (envsubst-compatible); the local deployments render them
 * with their own ports and paths, so what runs here is what is shipped.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** ops/, from tools/dist/local-cluster or tools/src/local-cluster alike. */
export const OPS_DIR = path.resolve(here, '../../../ops');

const PLACEHOLDER = /\$\{(LLMCHAT_[A-Z0-9_]+)\}/g;

/**
 * Replaces each `${LLMCHAT_NAME}` with `values.NAME`; any other `${…}` (a
 * program's own variables) stays. A placeholder without a value, or a value
 * no placeholder uses, is an error: a typo must not render silently.
 */
export function renderTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const used = new Set<string>();
  const missing = new Set<string>();
  const rendered = template.replace(PLACEHOLDER, (whole, name: string) => {
    const key = name.slice('LLMCHAT_'.length);
    const value = values[key];
    if (value === undefined) {
      missing.add(name);
      return whole;
    }
    used.add(key);
    return value;
  });
  if (missing.size > 0) throw new Error(`no value for ${[...missing].join(', ')}`);
  const unused = Object.keys(values).filter((key) => !used.has(key));
  if (unused.length > 0) throw new Error(`the template has no placeholder for ${unused.map((k) => `LLMCHAT_${k}`).join(', ')}`);
  return rendered;
}

/** Reads `ops/<file>` and renders it. */
export function renderOpsTemplate(file: string, values: Readonly<Record<string, string>>): string {
  const template = path.join(OPS_DIR, file);
  try {
    return renderTemplate(readFileSync(template, 'utf8'), values);
  } catch (err) {
    throw new Error(`${template}: ${(err as Error).message}`, { cause: err });
  }
}
