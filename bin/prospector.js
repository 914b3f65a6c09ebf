#!/usr/bin/env node
// Runs the TypeScript sources through tsx, or the compiled CLI (npm run build) where there are no sources.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const compiled = path.join(root, 'dist/cli/run.js');
const sources = path.join(root, 'cli/run.ts');
// Sources win in a checkout (a stale dist/ must not shadow them); images ship dist/ only.
if (existsSync(compiled) && (process.env.NODE_ENV === 'production' || !existsSync(sources))) {
  await import(pathToFileURL(compiled).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(sources).href);
}
