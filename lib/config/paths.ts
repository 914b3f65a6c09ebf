import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (or image) root: the nearest folder above us with a package.json. */
function findRoot(start: string): string {
  let dir = start;
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${start}`);
    dir = parent;
  }
  return dir;
}

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = findRoot(here);
/** True when running compiled JavaScript from dist/ rather than TypeScript sources. */
export const COMPILED = path.relative(ROOT, here).split(path.sep)[0] === 'dist';
