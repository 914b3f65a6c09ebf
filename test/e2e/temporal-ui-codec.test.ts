import { findOnPath } from '../setup/prerequisites.js';
import getPort from 'get-port';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { startIntake } from '../../api/services/start-intake.js';
import { codecEndpoint } from '../../api/routes/codec.js';
import { startTemporalDevServer, type DevServer } from '../../infra/temporal-dev.js';
import { loadConfig } from '../../lib/config/config.js';
import { startProspectsApi, type ProspectsApi } from '../api/prospects-api.js';
import { TEST_PAYLOAD_KEYS, testDataConverter } from '../helpers/payload-keys.js';
import { testDatabase, testTemporal, uniqueTaskQueue } from '../helpers/stack.js';

/**
 * The operator's view: the Temporal Web UI of a dev server started the way
 * `npm start` starts it (--ui-codec-endpoint naming the API's codec endpoint),
 * in Chromium. The workflow's input is ciphertext in Temporal; after signing
 * in at the API the UI shows the lead's notes decoded, and before it does not.
 */

const CHROMIUM = findOnPath('chromium') ?? '/usr/bin/chromium';

// What the page functions below touch in the browser (the project compiles without the DOM library).
declare const document: { body: { innerText: string } };
declare const localStorage: { setItem(key: string, value: string): void };

describe('the Temporal UI reads encrypted payloads through the codec endpoint', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let server: DevServer | undefined;
  let api: ProspectsApi;
  let browser: Browser | undefined;
  let client: Client;
  let uiUrl: string;
  let workflowId: string;
  const NOTES = `Wants SSO before the pilot; champion is the VP of RevOps (${Date.now().toString(36)})`;

  beforeAll(async () => {
    [db, temporal] = await Promise.all([testDatabase(), testTemporal()]);
    const [port, uiPort] = [await getPort(), await getPort()];
    uiUrl = `http://127.0.0.1:${uiPort}`;
    // The API first: the dev server is told its codec endpoint, the API the UI's origin.
    const config = await loadConfig({ env: {}, overrides: { PAYLOAD_KEYS: TEST_PAYLOAD_KEYS, TEMPORAL_UI_URL: uiUrl } });
    api = await startProspectsApi({ config, pool: db.pool, temporal: temporal.client, taskQueue: uniqueTaskQueue('ui'), dispatcher: false });
    const endpoint = codecEndpoint({ api: { ...config.api, publicUrl: api.url } });
    [server, browser] = await Promise.all([
      startTemporalDevServer({ binary: inject('temporalBinary'), port, uiPort, uiCodecEndpoint: endpoint, logLevel: 'error' }),
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] }),
    ]);
    const connection = await Connection.connect({ address: server.address });
    client = new Client({ connection, dataConverter: testDataConverter() });
    // No worker: the input the UI shows is in the first event of the history.
    ({ workflowId } = await startIntake(
      client,
      { sender: 'sales@prospector.example', lead: { email: 'omar@umbrella.example', name: 'Omar Haddad', notes: NOTES, source: 'test' } },
      { taskQueue: uniqueTaskQueue('ui-no-worker') },
    ));
  }, 120_000);

  afterAll(async () => {
    await client?.workflow.getHandle(workflowId).terminate('ui test done').catch(() => undefined);
    await client?.connection.close();
    await browser?.close();
    await server?.stop();
    await api?.close();
    await temporal?.close();
    await db?.drop();
  });

  /** What the UI's "Codec Server" settings store in the browser: this endpoint, with cross-origin credentials. */
  async function withCodecSettings(context: BrowserContext): Promise<Page> {
    const page = await context.newPage();
    await page.goto(uiUrl);
    await page.evaluate((endpoint) => {
      localStorage.setItem('endpoint', JSON.stringify(endpoint));
      localStorage.setItem('includeCredentials', 'true');
      localStorage.setItem('overrideRemoteCodecConfiguration', 'true');
    }, `${api.url}/v1/codec`);
    return page;
  }

  const workflowPage = () => `${uiUrl}/namespaces/default/workflows/${encodeURIComponent(workflowId)}`;
  const bodyText = (page: Page) => page.evaluate(() => document.body.innerText);

  it('shows ciphertext, not the notes, to a browser that has not signed in', async () => {
    const context = await browser!.newContext();
    try {
      const page = await withCodecSettings(context);
      const refused = page.waitForResponse((r) => r.url().startsWith(`${api.url}/v1/codec/decode`) && r.request().method() === 'POST', { timeout: 30_000 });
      await page.goto(workflowPage());
      expect((await refused).status()).toBe(401);
      // The input view shows the payload as Temporal holds it: encrypted, with its key id.
      await page.waitForFunction(() => /Input[\s\S]*"encoding": "YmluYXJ5L2VuY3J5cHRlZA=="/.test(document.body.innerText), undefined, { timeout: 30_000 });
      const text = await bodyText(page);
      expect(text).toContain('"encryption-key-id": "dGVzdC1maXh0dXJlLWE="'); // test-fixture-a
      expect(text).not.toContain(NOTES);
      expect(text).not.toContain('Omar Haddad');
    } finally {
      await context.close();
    }
  }, 90_000);

  it('shows the decoded lead notes in the workflow input after signing in with a payloads:decode key', async () => {
    const context = await browser!.newContext();
    try {
      const reader = await api.key(['payloads:decode'], 'lee@prospector.example');
      const login = await context.newPage();
      await login.goto(`${api.url}/v1/codec/login`);
      await login.fill('input[name="key"]', reader);
      await Promise.all([login.waitForURL(`${api.url}/v1/codec/login`), login.click('button[type="submit"]')]);
      expect(await bodyText(login)).toContain('Signed in to the codec endpoint');
      const cookies = await context.cookies(`${api.url}/v1/codec/decode`);
      expect(cookies).toEqual([expect.objectContaining({ name: 'prospector_codec', httpOnly: true, sameSite: 'Strict', path: '/v1/codec' })]);

      const page = await withCodecSettings(context);
      const decoded = page.waitForResponse((r) => r.url().startsWith(`${api.url}/v1/codec/decode`) && r.request().method() === 'POST' && r.status() === 200, { timeout: 30_000 });
      await page.goto(workflowPage());
      await decoded;
      await page.waitForFunction((notes) => document.body.innerText.includes(notes), NOTES, { timeout: 30_000 });
      // In the workflow's input view, as the JSON the intake was started with.
      const input = /\nInput\n([\s\S]*?)\nResult\n/.exec(await bodyText(page))?.[1] ?? '';
      expect(input).toContain(`"notes": "${NOTES}"`);
      expect(input).toContain('"name": "Omar Haddad"');
      expect(input).not.toContain('YmluYXJ5L2VuY3J5cHRlZA==');

      // The UI's reads are the session key's, in the audit trail.
      await expect
        .poll(async () => (await db.pool.query(`SELECT count(*)::int AS n FROM api_auth_audit WHERE operation_id = 'decodePayloads' AND decision = 'allow'`)).rows[0].n, { timeout: 5_000 })
        .toBeGreaterThan(0);
    } finally {
      await context.close();
    }
  }, 90_000);
});
