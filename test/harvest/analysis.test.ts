import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { keywordAnalysis, LlmMalformedError, parseAnalysisBatch } from '../../activities/harvest/analysis.js';
import type { HarvestActivities } from '../../activities/harvest/index.js';
import { upsertSignals } from '../../lib/store/signals.js';
import type { SignalInput } from '../../activities/harvest/sources/types.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import type { testDatabase } from '../helpers/stack.js';
import { harvestActivitiesStack } from './helpers.js';

/** Batch parsing, the keyword analyser, and the LLM activity with the real OpenAI SDK against the sandbox. */

describe('parseAnalysisBatch', () => {
  const item = (id: string, extra: object = {}) => ({ id, category: 'bug', sentiment: 'negative', urgency: 2, tags: ['a'], reasoning: 'r', ...extra });

  it('matches results to signals by id, whatever their order, and reports the ones left out', () => {
    const content = JSON.stringify({ results: [item('3'), item('1', { category: 'praise' }), item('99')] });
    const { analyses, missing } = parseAnalysisBatch(content, ['1', '2', '3']);
    expect(analyses.map((a) => [a.id, a.category])).toEqual([
      ['1', 'praise'],
      ['3', 'bug'],
    ]);
    expect(missing).toEqual(['2']);
  });

  it('counts an invalid item as missing, keeps the first of duplicates, and normalises tags and reasoning', () => {
    const content = JSON.stringify({
      results: [
        item('1', { category: 'hype' }),
        item('2', { tags: ['#Pricing', 'pricing', ' CRM ', 'a', 'b', 'c', 'd', 'e', 'f', 'g'], reasoning: 'x'.repeat(500) }),
        item('2', { category: 'praise' }),
        item('3', { urgency: 9 }),
      ],
    });
    const { analyses, missing } = parseAnalysisBatch(content, ['1', '2', '3']);
    expect(missing).toEqual(['1', '3']);
    expect(analyses).toHaveLength(1);
    expect(analyses[0]!.category).toBe('bug');
    expect(analyses[0]!.tags).toEqual(['pricing', 'crm', 'a', 'b', 'c', 'd', 'e', 'f']);
    expect(analyses[0]!.reasoning).toHaveLength(400);
  });

  it('rejects answers that are not JSON or have no results', () => {
    expect(() => parseAnalysisBatch('Sure! Here is', ['1'])).toThrow(LlmMalformedError);
    expect(() => parseAnalysisBatch('{"items":[]}', ['1'])).toThrow(LlmMalformedError);
    expect(() => parseAnalysisBatch(null, ['1'])).toThrow(LlmMalformedError);
  });
});

describe('keyword analyser', () => {
  const analyse = (text: string, likes = 0) => keywordAnalysis({ id: '1', text, likes, reposts: 0, replies: 0, quotes: 0 });

  it('classifies by the first matching rule, with urgency from category, wording and engagement', () => {
    expect(analyse('Looking for an alternative to Outboundly')).toMatchObject({ category: 'buying_intent', urgency: 3 });
    expect(analyse('Urgent: looking for a replacement, evaluating now', 500)).toMatchObject({ category: 'buying_intent', urgency: 5 });
    expect(analyse('MailRaven breach: rotate your tokens')).toMatchObject({ category: 'security', urgency: 5, sentiment: 'negative' });
    expect(analyse('Is PipeNest down for anyone else?')).toMatchObject({ category: 'outage', urgency: 4 });
    expect(analyse('Bug in PipeNest: deals keep reverting')).toMatchObject({ category: 'bug', urgency: 2 });
    expect(analyse('Does Prospector support Gmail drafts?')).toMatchObject({ category: 'question', urgency: 1 });
    expect(analyse('Love the new approval inbox, great work')).toMatchObject({ category: 'praise', sentiment: 'positive', urgency: 0 });
    expect(analyse('Quality over volume, every time.')).toMatchObject({ category: 'other', urgency: 0, sentiment: 'neutral' });
  });

  it('is deterministic and stays within the documented limits', () => {
    const text = 'Looking for an alternative to Outboundly #sales #crm because pricing doubled and support is slow and the API times out';
    expect(analyse(text)).toEqual(analyse(text));
    const a = analyse(text);
    expect(a.tags.length).toBeLessThanOrEqual(8);
    expect(a.tags[0]).toBe('looking-for');
    expect(a.tags.every((t) => t === t.toLowerCase())).toBe(true);
    expect(a.reasoning.length).toBeLessThanOrEqual(400);
  });
});

describe('LLM analysis activity (OpenAI SDK → sandbox)', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let sandbox: Sandbox;
  let control: SandboxClient;
  let acts: HarvestActivities;
  let n = 0;

  /** Stores `count` signals and returns their id range (afterId, throughId]. */
  async function seed(count: number, text = (i: number) => `Looking for an alternative to Outboundly, option ${i}`): Promise<{ afterId: string; throughId: string; ids: string[] }> {
    const before = (await db.pool.query('SELECT coalesce(max(id), 0)::text AS m FROM signals')).rows[0].m as string;
    const signals: SignalInput[] = Array.from({ length: count }, (_, i) => ({
      source: 'x',
      externalId: String(1_000_000 + ++n),
      text: text(n),
      postedAt: new Date().toISOString(),
      metrics: { likes: i, reposts: 0, replies: 0, quotes: 0 },
      raw: {},
    }));
    await upsertSignals(db.pool, signals, 'test');
    const { rows } = await db.pool.query('SELECT id::text FROM signals WHERE id > $1 ORDER BY signals.id', [before]);
    return { afterId: before, throughId: rows[rows.length - 1].id, ids: rows.map((r) => r.id) };
  }

  async function failure(p: Promise<unknown>): Promise<unknown> {
    return p.then(
      () => {
        throw new Error('expected a failure');
      },
      (e: unknown) => e,
    );
  }

  beforeAll(async () => {
    ({ db, sandbox, control, acts } = await harvestActivitiesStack());
  });
  afterAll(async () => {
    await sandbox?.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await control.reset('openai');
    await control.clearFaults();
  });

  it('analyses a batch of 25 in one structured-output call (schema signal_analysis) and stores every result', async () => {
    const range = await seed(25);
    const r = await acts.harvestAnalyseWithLlm({ ...range, maxBatch: 50 });
    expect(r).toMatchObject({ llm: 25, keywords: 0 });
    expect(r.tokens).toBeGreaterThan(0);
    const calls = await control.get<{ schema: string; format: string }[]>('/_sandbox/openai/calls');
    expect(calls).toEqual([expect.objectContaining({ schema: 'signal_analysis', format: 'json_schema' })]);
    const { rows } = await db.pool.query('SELECT analysed_by, category, urgency FROM signals WHERE id = ANY($1::bigint[])', [range.ids]);
    expect(rows.every((x) => x.analysed_by === 'llm:gpt-4o-mini' && x.category === 'buying_intent' && x.urgency >= 3)).toBe(true);
    // A second call for the same range finds nothing left to analyse and spends no LLM call.
    expect(await acts.harvestAnalyseWithLlm({ ...range, maxBatch: 50 })).toEqual({ llm: 0, keywords: 0, tokens: 0 });
    expect((await control.get<{ calls: number }>('/_sandbox/openai/stats')).calls).toBe(1);
  });

  it('fills the signals the model left out with the keyword analysis', async () => {
    const range = await seed(3, (i) => `PipeNest is down again ${i} partial-batch`);
    const [first] = range.ids;
    await control.post('/_sandbox/openai/script', {
      schema: 'signal_analysis',
      match: 'partial-batch',
      content: { results: [{ id: first, category: 'outage', sentiment: 'negative', urgency: 4, tags: ['pipenest'], reasoning: 'scripted' }] },
    });
    const r = await acts.harvestAnalyseWithLlm({ ...range, maxBatch: 50 });
    expect(r).toMatchObject({ llm: 1, keywords: 2 });
    const { rows } = await db.pool.query('SELECT id::text, analysed_by, reasoning, category FROM signals WHERE id = ANY($1::bigint[]) ORDER BY signals.id', [range.ids]);
    expect(rows[0]).toMatchObject({ analysed_by: 'llm:gpt-4o-mini', reasoning: 'scripted' });
    expect(rows.slice(1).every((x) => x.analysed_by === 'keywords' && x.category === 'outage')).toBe(true);
  });

  it('turns a refusal into a non-retryable failure (the workflow then uses the keyword analyser)', async () => {
    const range = await seed(2, (i) => `refuse-me ${i}`);
    await control.post('/_sandbox/openai/script', { schema: 'signal_analysis', match: 'refuse-me', content: { refusal: 'I cannot help with that.' } });
    const err = await failure(acts.harvestAnalyseWithLlm({ ...range, maxBatch: 50 }));
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'LlmUnusable', nonRetryable: true });
    expect(await acts.harvestAnalyseWithKeywords({ ...range, maxBatch: 50 })).toMatchObject({ keywords: 2 });
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM signals WHERE id = ANY($1::bigint[]) AND analysed_by = 'keywords'`, [range.ids]);
    expect(rows[0].n).toBe(2);
  });

  it('retries malformed answers, and honours Retry-After on a 429; 5xx stays a plain retryable error', async () => {
    const range = await seed(2, (i) => `glitch ${i}`);
    await control.post('/_sandbox/openai/script', { schema: 'signal_analysis', match: 'glitch', content: 'Here are your results: {' });
    const malformed = await failure(acts.harvestAnalyseWithLlm({ ...range, maxBatch: 50 }));
    expect(malformed).toMatchObject({ type: 'LlmMalformed', nonRetryable: false });

    await control.addFaults({ provider: 'openai', kind: 'rate_limit', retryAfterSeconds: 7, count: 1 });
    const limited = await failure(acts.harvestAnalyseWithLlm({ ...range, maxBatch: 50 }));
    expect(limited).toBeInstanceOf(ApplicationFailure);
    expect(limited).toMatchObject({ type: 'LlmRateLimited', nonRetryable: false, nextRetryDelay: 7_000 });

    await control.addFaults({ provider: 'openai', kind: 'error', status: 500, count: 1 });
    const server = await failure(acts.harvestAnalyseWithLlm({ ...range, maxBatch: 50 }));
    expect(server).not.toBeInstanceOf(ApplicationFailure);
    expect((server as { status?: number }).status).toBe(500);

    // With the faults spent, the same range goes through.
    expect(await acts.harvestAnalyseWithLlm({ ...range, maxBatch: 50 })).toMatchObject({ llm: 2 });
  });
});
