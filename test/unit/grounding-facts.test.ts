import { describe, expect, it } from 'vitest';
import { FACT_SOURCES } from '../../lib/domain/grounding.js';
import { SENDER_PITCH_MAX, senderFacts, threadFacts } from '../../lib/domain/grounding-facts.js';

/** The non-CRM evidence of an intake: Gmail thread messages and the sender's profile. */

describe('threadFacts', () => {
  const messages = [
    { from: 'dana@acme.example', at: '2030-01-02T10:00:00Z', text: '  We are moving our warehouses to the new system in March.\n' },
    { from: 'sales@prospector.example', at: '2030-01-03T10:00:00Z', text: '' },
    { from: 'dana@acme.example', at: '2030-01-04T10:00:00Z', text: 'Can we talk about pricing for 40 seats?' },
  ];

  it('makes one gmail:thread fact per message with text, numbered by position, text trimmed', () => {
    expect(threadFacts(messages)).toEqual([
      { id: 'thread.1', text: 'We are moving our warehouses to the new system in March.', source: 'gmail:thread' },
      { id: 'thread.3', text: 'Can we talk about pricing for 40 seats?', source: 'gmail:thread' },
    ]);
  });

  it('has no facts without a thread, and carries the text exactly as the writer context does (no cut, no additions)', () => {
    expect(threadFacts(undefined)).toEqual([]);
    expect(threadFacts([])).toEqual([]);
    const long = 'x'.repeat(1200);
    expect(threadFacts([{ from: 'a@b.example', at: '2030-01-01T00:00:00Z', text: long }])[0]!.text).toBe(long);
  });
});

describe('senderFacts', () => {
  it('states the sender company, and the product description only when one is set', () => {
    expect(senderFacts({ company: 'Prospector' })).toEqual([{ id: 'sender.company', text: 'The sender works at Prospector.', source: 'sender' }]);
    expect(senderFacts({ company: 'Prospector', pitch: null })).toHaveLength(1);
    expect(senderFacts({ company: 'Prospector', pitch: '   ' })).toHaveLength(1);
    expect(senderFacts({ company: 'Prospector', pitch: ' Prospector drafts grounded first emails for sales teams. ' })).toEqual([
      { id: 'sender.company', text: 'The sender works at Prospector.', source: 'sender' },
      { id: 'sender.product', text: 'Prospector drafts grounded first emails for sales teams.', source: 'sender' },
    ]);
    expect(senderFacts({ company: ' ', pitch: undefined })).toEqual([]);
  });

  it('never carries more of a pitch than the settings allow', () => {
    const pitch = senderFacts({ company: 'P', pitch: 'y'.repeat(SENDER_PITCH_MAX + 50) }).find((f) => f.id === 'sender.product')!;
    expect(pitch.text).toHaveLength(SENDER_PITCH_MAX);
  });

  it('only uses sources the grounding rules know', () => {
    const all = [...threadFacts([{ from: 'a', at: 'b', text: 'c' }]), ...senderFacts({ company: 'P', pitch: 'q' })];
    for (const f of all) expect(FACT_SOURCES).toContain(f.source);
  });
});
