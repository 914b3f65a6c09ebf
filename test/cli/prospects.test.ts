import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { loadConfig } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import type { Sandbox } from '../../sandbox/server.js';
import type { SandboxClient } from '../../sandbox/client.js';
import { startProspectsApi, type ProspectsApi } from '../api/prospects-api.js';
import { runCli as cli } from '../helpers/cli.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { uniqueLead, waitForReadModel, waitForStage } from '../workflow/intake-helpers.js';

/** `prospector prospects …`, `suppress …`, `pause`/`resume`, `screening`: the real CLI against the real API and a worker. */

describe('prospector prospects CLI', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let sbx: SandboxClient;
  let worker: Awaited<ReturnType<typeof testWorker>> | undefined;
  let api: ProspectsApi;
  const taskQueue = uniqueTaskQueue('intake-cli');
  const saved = { url: process.env.PROSPECTOR_API_URL, key: process.env.PROSPECTOR_API_KEY };

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    let sb;
    [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
    sandbox = sb.sandbox;
    sbx = sb.client;
    const config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url } });
    worker = await testWorker(temporal, createActivities({ config, pool: db.pool, log: createLogger({ name: 't', level: 'silent' }) }), taskQueue);
    api = await startProspectsApi({ config, pool: db.pool, temporal: temporal.client, taskQueue });
    process.env.PROSPECTOR_API_URL = api.url;
    process.env.PROSPECTOR_API_KEY = await api.key(['admin'], 'kim@prospector.example');
  });

  afterAll(async () => {
    process.env.PROSPECTOR_API_URL = saved.url;
    process.env.PROSPECTOR_API_KEY = saved.key;
    await api?.close();
    await worker?.stop();
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
  });

  it('submit, list, show, edit, approve (stale refused), reject', async () => {
    const lead = uniqueLead();
    const submitted = await cli('prospects', 'submit', lead.email, '--name', 'Kim Park', '--company', lead.company!, '--notes', 'Looking at tools', '--json', '--wait');
    expect(submitted.code).toBe(0);
    const { id, status, runId, submissionId } = JSON.parse(submitted.out);
    expect(status).toBe('queued');
    expect(runId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await api.runOf(submissionId)).runId).toBe(runId);
    const again = await cli('prospects', 'submit', lead.email.toUpperCase());
    expect(again.out).toMatch(new RegExp(`^Joined the intake for this person ${id.replace(/[.+]/g, '\\$&')} \\(submission [0-9a-f-]{36}\\)\\.\nFollow it: prospector prospects show `));
    await waitForReadModel(db.pool, id, ['AWAITING_APPROVAL']);

    const list = await cli('prospects', 'list', '--stage', 'awaiting_approval');
    expect(list.code).toBe(0);
    expect(list.out).toMatch(new RegExp(`AWAITING_APPROVAL\\s+AWAITING_APPROVAL\\s+v1\\s+${lead.email.replace(/[.]/g, '\\.')}`));

    const show = await cli('prospects', 'show', lead.email);
    expect(show.code).toBe(0);
    expect(show.out).toContain(`${id}  AWAITING_APPROVAL`);
    // The lead's typed company grounds nothing, so the sandbox writer's subject names ours.
    expect(show.out).toMatch(/Draft v1: Quick idea from Prospector/);
    expect(show.out).toContain(`Decide: prospector prospects approve ${id} --draft-version 1`);

    // The approver is whoever the key belongs to, and only once they are in the registry.
    expect((await cli('prospects', 'approve', id, '--draft-version', '1', '--approver', 'someone@else.example')).code).not.toBe(0);
    const notYet = await cli('prospects', 'approve', id, '--draft-version', '1');
    expect(notYet.err).toMatch(/403 Forbidden: .*kim@prospector\.example is not a registered approver/);
    expect(await cli('approvers', 'add', 'Kim@Prospector.example', '--name', 'Kim Park')).toMatchObject({ code: 0, out: expect.stringMatching(/^kim@prospector\.example may approve, edit, reject\./) });
    expect((await cli('approvers', 'list')).out).toMatch(/kim@prospector\.example\s+approve,edit,reject\s+Kim Park/);
    const stale = await cli('prospects', 'approve', id, '--draft-version', '2');
    expect(stale.code).toBe(1);
    expect(stale.err).toMatch(/409 Conflict: Draft version 2 is stale: the current version is 1/);

    const edit = await cli('prospects', 'edit', id, '--draft-version', '1', '--subject', 'Quick question');
    expect(edit).toMatchObject({ code: 0, out: 'Edit applied: the draft is now version 2.\n' });
    const token = await cli('prospects', 'approve', id, '--draft-version', '2', '--token-only');
    expect(token.out).toMatch(/^pat1\.[\w-]+\.[\w-]+\n$/);
    expect(token.err).toMatch(/Signed for approve of .* by kim@prospector\.example, valid until .*\n  temporal workflow signal --namespace default --workflow-id /);
    const approve = await cli('prospects', 'approve', id, '--draft-version', '2');
    expect(approve).toMatchObject({ code: 0, out: `Approved ${id}.\n` });
    // The approval is recorded at once; the close-out (task, note) follows.
    await expect.poll(async () => JSON.parse((await cli('prospects', 'show', id, '--json')).out).stage, { timeout: 15_000 }).toBe('APPROVED');
    const after = JSON.parse((await cli('prospects', 'show', id, '--json')).out);
    expect(after).toMatchObject({ stage: 'APPROVED', draftVersion: 2, decision: { by: 'kim@prospector.example', version: 2 } });

    const other = JSON.parse((await cli('prospects', 'submit', uniqueLead().email, '--json')).out);
    await waitForReadModel(db.pool, other.id, ['AWAITING_APPROVAL']);
    expect((await cli('prospects', 'reject', other.id)).code).not.toBe(0); // --reason is required
    expect(await cli('prospects', 'reject', other.id, '--reason', 'duplicate lead')).toMatchObject({ code: 0, out: `Rejected ${other.id}.\n` });
    expect((await cli('prospects', 'submit', 'nope')).err).toMatch(/400 Invalid request: body\.email: "nope" is not an email address/);
    expect(await cli('approvers', 'remove', 'kim@prospector.example')).toMatchObject({ code: 0, out: 'Removed kim@prospector.example.\n' });
    expect(await cli('approvers', 'remove', 'kim@prospector.example')).toMatchObject({ code: 4, err: 'error: no approver kim@prospector.example\n' });
  });

  it('show prints each rejected sentence of a draft that went to a person, and why', async () => {
    const lead = uniqueLead();
    const invented = { subject: 'A quick question', body: 'Hi Robin,\n\nFollowing up on our call last week.\n\nBest regards,\nSam', factsUsed: [] };
    await sbx.post('/_sandbox/openai/script', { match: lead.company, schema: 'prospect_email', content: invented, times: 2 });
    const submitted = JSON.parse((await cli('prospects', 'submit', lead.email, '--company', lead.company!, '--json', '--wait')).out);
    await waitForReadModel(db.pool, submitted.id, ['NEEDS_HUMAN']);

    const show = await cli('prospects', 'show', lead.email);
    expect(show.code).toBe(0);
    expect(show.out).toMatch(/Rejected sentences \(draft attempt 2\):\n {2}\d+\. “Following up on our call last week\.”\n {5}\S/);
    const shown = JSON.parse((await cli('prospects', 'show', lead.email, '--json')).out);
    expect(shown.grounding).toMatchObject({ attempts: 2, rejections: [{ text: 'Following up on our call last week.', kind: 'prior_interaction' }] });
    expect(show.out).toContain(shown.grounding.rejections[0].reason);
  });

  it('suppress add/list/remove, pause/resume and the screening policy', async () => {
    expect(await cli('suppress', 'add', '*@Rival.example', '--reason', 'competitor')).toMatchObject({ code: 0, out: 'Suppressed *@rival.example (domain).\n' });
    expect((await cli('suppress', 'list')).out).toMatch(/\*@rival\.example\s+domain\s+competitor/);
    expect((await cli('suppress', 'add', 'not a pattern')).code).toBe(1);
    expect((await cli('suppress', 'remove', '*@rival.example')).code).toBe(0);
    expect((await cli('suppress', 'list')).out).toBe('The suppression list is empty.\n');

    expect((await cli('pause', '--reason', 'list cleanup')).code).toBe(0);
    try {
      expect((await cli('screening')).out).toMatch(/Paused:\s+yes \(list cleanup\)/);
      const lead = JSON.parse((await cli('prospects', 'submit', uniqueLead().email, '--json')).out);
      expect((await waitForStage(temporal.client, lead.id, ['SKIPPED'])).reason).toBe('paused: intake is paused (list cleanup)');
    } finally {
      expect((await cli('resume')).out).toBe('Intake resumed.\n');
    }
    const set = await cli('screening', '--recontact-days', '30', '--domain-cap', '5', '--json');
    expect(JSON.parse(set.out)).toMatchObject({ paused: false, recontactWindowDays: 30, domainDailyCap: 5 });
    expect((await cli('screening', '--domain-cap', '-1')).code).toBe(1);
  });
});
