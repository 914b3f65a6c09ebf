import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import express from 'express';
import { startSandbox, type Sandbox } from '../../sandbox/server.js';
import { SandboxClient } from '../../sandbox/client.js';
import type { ProviderModule } from '../../sandbox/types.js';

/** A tiny provider that counts writes, to prove the fault machinery itself. */
const counter: ProviderModule<{ writes: number }> = {
  name: 'x',
  prefixes: ['/count'],
  initialState: () => ({ writes: 0 }),
  errorFor: (kind, status, message, extra) => ({
    status,
    headers: kind === 'rate_limit' ? { 'retry-after': String(extra?.retryAfterSeconds ?? 1) } : undefined,
    body: { kind, message },
  }),
  routes(router, ctx) {
    router.post('/count', (_req, res) => {
      ctx.state.writes++;
      ctx.changed();
      res.json({ writes: ctx.state.writes });
    });
  },
};

describe('sandbox fault injection', () => {
  let sandbox: Sandbox;
  let client: SandboxClient;
  beforeAll(async () => {
    sandbox = await startSandbox({ providers: [counter] });
    client = new SandboxClient(sandbox.url);
  });
  afterAll(() => sandbox.close());

  const write = () => fetch(`${sandbox.url}/count`, { method: 'POST' });

  it('apply_then_fail changes state but answers with an error', async () => {
    await client.reset();
    await client.addFaults({ provider: 'x', kind: 'apply_then_fail', count: 1 });
    const failed = await write();
    expect(failed.status).toBe(500);
    expect((await client.state('x')).writes).toBe(1);
    const ok = await write();
    expect(await ok.json()).toEqual({ writes: 2 });
  });

  it('rate_limit answers 429 with Retry-After and applies nothing', async () => {
    await client.reset();
    await client.addFaults({ provider: 'x', kind: 'rate_limit', retryAfterSeconds: 7, count: 1 });
    const res = await write();
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('7');
    expect((await client.state('x')).writes).toBe(0);
  });

  it('timeout hangs until the client gives up', async () => {
    await client.reset();
    await client.addFaults({ provider: 'x', kind: 'timeout', delayMs: 5_000, count: 1 });
    await expect(fetch(`${sandbox.url}/count`, { method: 'POST', signal: AbortSignal.timeout(300) })).rejects.toThrow();
    expect((await client.state('x')).writes).toBe(0);
  });

  it('error rate is roughly the configured rate and counted', async () => {
    await client.reset();
    await client.addFaults({ provider: 'x', kind: 'error', rate: 0.3, match: 'POST /count' });
    let failures = 0;
    for (let i = 0; i < 200; i++) if ((await write()).status >= 500) failures++;
    expect(failures).toBeGreaterThan(35);
    expect(failures).toBeLessThan(85);
    const stats = await client.stats();
    expect(stats.injected.x!.error).toBe(failures);
  });

  it('rejects a malformed fault rule naming the problem', async () => {
    await expect(client.addFaults({ provider: 'x', kind: 'explode' as never })).rejects.toThrow(/400.*kind/);
  });

  it('unknown routes get a 404 naming the route', async () => {
    const res = await fetch(`${sandbox.url}/nope`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { message: string }).message).toContain('GET /nope');
  });
});
void express;
