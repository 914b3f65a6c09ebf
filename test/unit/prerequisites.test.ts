import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../lib/config/paths.js';
import { findOnPath, missingPrerequisites } from '../setup/prerequisites.js';

/**
 * The global setup's check for programs the tests run but npm does not
 * install: without one, the run stops before anything starts, naming the
 * program and the command that installs it.
 */

const scratch = mkdtempSync(path.join(os.tmpdir(), 'prereq-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('test prerequisites', () => {
  it('without redis-server and chromium on PATH, names each, what needs it and the command that installs it', () => {
    const empty = mkdtempSync(path.join(scratch, 'empty-'));
    expect(missingPrerequisites({ PATH: empty })).toBe(
      [
        'redis-server not found on PATH: the Redis rate-limit tests (test/security/replicas.test.ts) need it; install it with: sudo apt-get install -y redis-server',
        'chromium not found on PATH: the Temporal Web UI tests (test/e2e/temporal-ui-codec.test.ts) need it; install it with: sudo apt-get install -y chromium',
      ].join('\n'),
    );
  });

  it('a redis-server file that is not executable does not count', () => {
    const dir = mkdtempSync(path.join(scratch, 'noexec-'));
    writeFileSync(path.join(dir, 'redis-server'), '#!/bin/sh\n', { mode: 0o644 });
    expect(findOnPath('redis-server', { PATH: dir })).toBeUndefined();
    expect(missingPrerequisites({ PATH: dir })).toContain('redis-server not found');
  });

  it('passes when executable redis-server and chromium are on any PATH entries', () => {
    const empty = mkdtempSync(path.join(scratch, 'empty-'));
    const dir = mkdtempSync(path.join(scratch, 'bin-'));
    const other = mkdtempSync(path.join(scratch, 'bin-'));
    writeFileSync(path.join(dir, 'redis-server'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    expect(missingPrerequisites({ PATH: [empty, dir].join(path.delimiter) })).toMatch(/^chromium not found/);
    writeFileSync(path.join(other, 'chromium'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const env = { PATH: [empty, dir, other].join(path.delimiter) };
    expect(findOnPath('redis-server', env)).toBe(path.join(dir, 'redis-server'));
    expect(missingPrerequisites(env)).toBeUndefined();
  });

  it('vitest stops in the global setup, before any test file runs, with that message', () => {
    // PATH holds node only: no redis-server, and no temporal or go for the setup to reach.
    const dir = mkdtempSync(path.join(scratch, 'node-only-'));
    symlinkSync(process.execPath, path.join(dir, 'node'));
    const out = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', 'test/unit/sandbox-core.test.ts'], {
      cwd: ROOT,
      // This run's own VITEST_* variables would make the child think it is one of our workers.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST'))), PATH: dir },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const output = out.stdout + out.stderr;
    expect(out.status, output).not.toBe(0);
    expect(output).toContain('redis-server not found on PATH');
    expect(output).toContain('sudo apt-get install -y redis-server');
    expect(output).not.toMatch(/sandbox fault injection|Tests\s+\d+ passed|No test files found/);
  });

  it("npm test's first command names a missing program before the typecheck, and passes where it is found", () => {
    const script = path.join(ROOT, 'test/setup/prerequisites.ts');
    const tsx = path.join(ROOT, 'node_modules/tsx/dist/cli.mjs');
    const nodeOnly = mkdtempSync(path.join(scratch, 'first-'));
    symlinkSync(process.execPath, path.join(nodeOnly, 'node'));
    const missing = spawnSync(process.execPath, [tsx, script], { cwd: ROOT, env: { ...process.env, PATH: nodeOnly }, encoding: 'utf8', timeout: 60_000 });
    expect(missing.status, missing.stderr).toBe(1);
    expect(missing.stderr).toContain('redis-server not found on PATH');
    expect(missing.stderr).toContain('sudo apt-get install -y redis-server');
    const withRedis = mkdtempSync(path.join(scratch, 'first-redis-'));
    writeFileSync(path.join(withRedis, 'redis-server'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    writeFileSync(path.join(withRedis, 'chromium'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const found = spawnSync(process.execPath, [tsx, script], { cwd: ROOT, env: { ...process.env, PATH: [nodeOnly, withRedis].join(path.delimiter) }, encoding: 'utf8', timeout: 60_000 });
    expect(found.status, found.stderr).toBe(0);
    expect(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.test).toMatch(/^tsx test\/setup\/prerequisites\.ts && tsc/);
  });
});
