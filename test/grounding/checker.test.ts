import { describe, expect, it } from 'vitest';
import { figures, loadLabelledSets, score } from '../../bench/grounding.js';
import { checkClaims, type Fact, type GroundingInput } from '../../lib/domain/grounding.js';

/**
 * The deterministic grounding layer (lib/domain/grounding.ts): the cases the
 * old substring check let through, and the labelled set's targets, so a
 * change that makes the checker worse fails CI (bench/grounding.ts prints
 * the per-kind table).
 */

const facts: Fact[] = [
  { id: 'company.description', text: 'Acme builds logistics software for mid-size warehouses.', source: 'hubspot:company' },
  { id: 'company.size', text: 'Acme has about 250 employees.', source: 'hubspot:company' },
  { id: 'contact.title', text: 'Dana Ruiz is VP Operations at Acme.', source: 'hubspot:contact' },
  { id: 'sender.product', text: 'Prospector drafts sales emails from CRM data.', source: 'sender' },
];

const input = (body: string, extra: Partial<GroundingInput> = {}): GroundingInput => ({
  subject: 'Quick idea',
  body,
  facts,
  addressing: { prospectName: 'Dana Ruiz', senderName: 'Sam Lee', senderCompany: 'Prospector' },
  slots: [{ label: 'Tue 8 Dec, 20:00 UTC' }, { label: 'Thu 3 Dec, 10:00 UTC' }],
  meetingMinutes: 30,
  priorThread: false,
  ...extra,
});

describe('the claim checker', () => {
  it('passes a draft that says only what the facts hold, in its own words', () => {
    const body =
      "Hi Dana,\n\nAcme builds logistics software for mid-size warehouses, and with around 250 people I imagine prep adds up. Prospector drafts sales emails from your CRM data.\n\nWould Tue 8 Dec at 20:00 UTC work for a 30-minute call?\n\nBest,\nSam Lee\nAccount Executive, Prospector";
    expect(checkClaims(input(body))).toEqual([]);
  });

  it('rejects what a lead typed into the company field: it is not evidence', () => {
    // The lead's company field read "Acme — promised a 90 % discount"; the facts never say so.
    const rejections = checkClaims(input('Hi Dana,\n\nAs promised, Acme gets a 90% discount on the first year.\n\nBest,\nSam'));
    expect(rejections).toEqual([expect.objectContaining({ text: expect.stringContaining('90%') })]);
  });

  it('matches numbers as numbers, not inside slot timestamps or other words', () => {
    const [r] = checkClaims(input('Teams like yours save 20 hours, 3x faster.'));
    expect(r).toMatchObject({ kind: 'figure', reason: expect.stringMatching(/"20 hours"|"20"/) });
    expect(checkClaims(input('Does Thu 3 Dec at 10:00 UTC suit you?'))).toEqual([]);
  });

  it('names the sentence and the kind for each invented claim', () => {
    const body = [
      'Following up on our call last week.',
      'Your colleague in finance asked me to reach out.',
      'Congrats on your recent acquisition.',
      'Your team already uses our product.',
      'Twelve engineers is a lot to coordinate.',
      'As the CTO, you care about uptime.',
      'Acme builds logistics software for hospitals.',
      'We help teams in Denver.',
    ].join(' ');
    const kinds = checkClaims(input(body)).map((r) => [r.sentence, r.kind]);
    expect(kinds).toEqual([
      [2, 'prior_interaction'],
      [3, 'relationship'],
      [4, 'event'],
      [5, 'usage'],
      [6, 'number_word'],
      [7, 'role'],
      [8, 'changed_fact'],
      [9, 'place'],
    ]);
  });

  it('grounds an earlier conversation only in a real thread, and only in the way they met', () => {
    const thread = { priorThread: true, facts: [...facts, { id: 'thread.1', text: 'Dana asked about pricing for 50 seats after our call.', source: 'gmail:thread' as const }] };
    expect(checkClaims(input('Following up on our call, here is the pricing for 50 seats.', thread))).toEqual([]);
    expect(checkClaims(input('Great to meet you at the logistics summit last month.', thread))).toEqual([expect.objectContaining({ kind: 'prior_interaction' })]);
  });
});

describe('the labelled set (test/grounding/labelled)', () => {
  const sets = loadLabelledSets();
  const f = figures(score(sets));

  it('holds at least 200 drafts: 100 planted across at least eight kinds, 100 clean', () => {
    expect(f.planted).toBeGreaterThanOrEqual(100);
    expect(f.clean).toBeGreaterThanOrEqual(100);
    expect(Object.keys(f.byKind).length).toBeGreaterThanOrEqual(8);
  });

  it('catches at least 95 % of planted claims, and 85 % of each kind, with at most 5 % false alarms', () => {
    console.info(`grounding: caught ${f.caught}/${f.planted} planted, ${f.falseAlarms}/${f.clean} false alarms`);
    expect(f.caught / f.planted).toBeGreaterThanOrEqual(0.95);
    expect(f.falseAlarms / f.clean).toBeLessThanOrEqual(0.05);
    for (const [kind, k] of Object.entries(f.byKind)) expect(k.caught / k.planted, kind).toBeGreaterThanOrEqual(0.85);
  });
});
