import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CLAIM_KINDS, checkClaims, type Fact, type GroundingInput, type Rejection } from '../lib/domain/grounding.js';
import { ROOT } from '../lib/config/paths.js';

/**
 * The deterministic grounding layer over the labelled set
 * (test/grounding/labelled/*.json): hand-written drafts against a few fixture
 * contexts, each clean or carrying exactly one planted claim of a known kind.
 * Prints recall per planted kind (a planted draft counts as caught when any
 * sentence is rejected; "on the sentence" when the planted one is), false
 * alarms on clean drafts, and the time per draft.
 *
 *   npx tsx bench/grounding.ts            # every set
 *   npx tsx bench/grounding.ts dev --show # one set, with each miss and false alarm
 */

export interface LabelledContext {
  description?: string;
  /** The lead's typed fields: they address the person and ground nothing. */
  prospect: { name?: string; email: string; company?: string; title?: string };
  sender: { name: string; company: string; email?: string };
  facts: Fact[];
  thread?: { from: string; at: string; text: string }[];
  slots: { label: string }[];
  meetingMinutes: number;
}

export interface LabelledDraft {
  id: string;
  context: string;
  label: 'clean' | 'planted';
  kind?: string;
  /** The sentence that carries the planted claim. */
  claim?: string;
  subject: string;
  body: string;
}

export interface LabelledSet {
  name: string;
  contexts: Record<string, LabelledContext>;
  drafts: LabelledDraft[];
}

export const LABELLED_DIR = path.join(ROOT, 'test/grounding/labelled');

export function loadLabelledSets(dir = LABELLED_DIR): LabelledSet[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ name: f.replace(/\.json$/, ''), ...(JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as Omit<LabelledSet, 'name'>) }));
}

/** What the writer activity gives the checker, from a fixture context. */
export function groundingInputOf(context: LabelledContext, draft: Pick<LabelledDraft, 'subject' | 'body'>): GroundingInput {
  return {
    subject: draft.subject,
    body: draft.body,
    facts: context.facts,
    addressing: { prospectName: context.prospect.name, senderName: context.sender.name, senderCompany: context.sender.company },
    slots: context.slots,
    meetingMinutes: context.meetingMinutes,
    priorThread: Boolean(context.thread?.length),
  };
}

export interface Scored {
  draft: LabelledDraft;
  rejections: Rejection[];
  caught: boolean;
  onSentence: boolean;
}

export function score(sets: LabelledSet[]): Scored[] {
  const out: Scored[] = [];
  for (const set of sets) {
    for (const draft of set.drafts) {
      const context = set.contexts[draft.context];
      if (!context) throw new Error(`${set.name}: draft ${draft.id} names context "${draft.context}", which the set does not have`);
      const rejections = checkClaims(groundingInputOf(context, draft));
      const claim = draft.claim ? draft.claim.replace(/\s+/g, ' ').trim() : '';
      const onSentence = Boolean(claim) && rejections.some((r) => overlaps(r.text, claim));
      out.push({ draft, rejections, caught: rejections.length > 0, onSentence });
    }
  }
  return out;
}

/** A rejected sentence is the planted one when most of its words are the claim's (tokenisation differs). */
function overlaps(sentence: string, claim: string): boolean {
  const words = (t: string) => t.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  const c = new Set(words(claim));
  const s = words(sentence);
  return s.length > 0 && s.filter((w) => c.has(w)).length / s.length >= 0.6;
}

export interface Figures {
  planted: number;
  caught: number;
  onSentence: number;
  clean: number;
  falseAlarms: number;
  byKind: Record<string, { planted: number; caught: number; onSentence: number }>;
}

export function figures(scored: Scored[]): Figures {
  const f: Figures = { planted: 0, caught: 0, onSentence: 0, clean: 0, falseAlarms: 0, byKind: {} };
  for (const s of scored) {
    if (s.draft.label === 'clean') {
      f.clean++;
      if (s.caught) f.falseAlarms++;
      continue;
    }
    const k = (f.byKind[s.draft.kind ?? '?'] ??= { planted: 0, caught: 0, onSentence: 0 });
    f.planted++;
    k.planted++;
    if (s.caught) (f.caught++, k.caught++);
    if (s.onSentence) (f.onSentence++, k.onSentence++);
  }
  return f;
}

const pct = (a: number, b: number) => (b ? `${((100 * a) / b).toFixed(1)} %` : '-');

function table(title: string, f: Figures) {
  console.log(`\n${title}`);
  console.log('kind               planted  caught  recall    on the sentence');
  for (const kind of [...CLAIM_KINDS, ...Object.keys(f.byKind).filter((k) => !(CLAIM_KINDS as readonly string[]).includes(k))]) {
    const k = f.byKind[kind];
    if (!k) continue;
    console.log(`${kind.padEnd(18)} ${String(k.planted).padStart(7)} ${String(k.caught).padStart(7)}  ${pct(k.caught, k.planted).padStart(7)}   ${pct(k.onSentence, k.planted).padStart(7)}`);
  }
  console.log(`${'all planted'.padEnd(18)} ${String(f.planted).padStart(7)} ${String(f.caught).padStart(7)}  ${pct(f.caught, f.planted).padStart(7)}   ${pct(f.onSentence, f.planted).padStart(7)}`);
  console.log(`false alarms: ${f.falseAlarms} of ${f.clean} clean drafts (${pct(f.falseAlarms, f.clean)})`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const only = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const show = process.argv.includes('--show');
  const sets = loadLabelledSets().filter((s) => only.length === 0 || only.includes(s.name));
  const started = performance.now();
  const scored = score(sets);
  const ms = performance.now() - started;
  for (const set of sets) table(`set ${set.name} (${set.drafts.length} drafts, ${Object.keys(set.contexts).length} contexts)`, figures(scored.filter((s) => set.drafts.includes(s.draft))));
  const all = figures(scored);
  if (sets.length > 1) table(`all sets (${scored.length} drafts)`, all);
  console.log(`\n${(ms / scored.length).toFixed(1)} ms per draft (${scored.length} drafts in ${(ms / 1000).toFixed(1)} s)`);
  if (show) {
    for (const s of scored) {
      if (s.draft.label === 'planted' && !s.caught) console.log(`\nMISS ${s.draft.id} [${s.draft.kind}] ${s.draft.claim}`);
      if (s.draft.label === 'clean' && s.caught) for (const r of s.rejections) console.log(`\nFALSE ALARM ${s.draft.id} #${r.sentence} [${r.kind}] ${r.text}\n   ${r.reason}`);
    }
  }
  const worst = Math.min(...Object.values(all.byKind).map((k) => k.caught / k.planted));
  const ok = all.caught / all.planted >= 0.95 && all.falseAlarms / all.clean <= 0.05 && worst >= 0.85;
  console.log(`\nRESULT: ${ok ? 'PASS' : 'FAIL'} (targets: recall >= 95 %, false alarms <= 5 %, every kind >= 85 %)`);
}
