import nlp from 'compromise';
import { stemmer } from 'stemmer';
import {
  ENGLISH,
  EVENT_STEMS,
  GENERIC,
  CHANNEL_GROUPS,
  INTERACTION_PATTERNS,
  NEUTRAL_CAPITALS,
  NUMBER_WORDS,
  RELATIONSHIP_PATTERNS,
  ROLE_ACRONYMS,
  ROLE_PATTERNS,
  ROLE_WORDS,
  SCHEDULING,
  SPELLINGS,
  STOPWORDS,
  TIME_MARKERS,
  OUR_PRODUCT_USAGE,
  USAGE_PATTERNS,
} from './grounding/lexicon.js';

/**
 * Whether a draft says only what we know. Pure: the writer activity calls it
 * on every draft, the grounding bench runs it over the labelled set, and
 * nothing else decides what counts as grounded.
 *
 * Evidence is facts, each with its source. The lead's own typed fields (name,
 * company, title, notes) are never evidence: a lead cannot make us claim
 * something by writing it in a form. They only address the person.
 */

export const FACT_SOURCES = ['hubspot:contact', 'hubspot:company', 'gmail:thread', 'calendar', 'sender'] as const;
export type FactSource = (typeof FACT_SOURCES)[number];

export interface Fact {
  /** Stable within one context, e.g. `company.description`, `thread.2`, `sender.product`. */
  id: string;
  text: string;
  source: FactSource;
}

/** What a rejected sentence claims without support. */
export const CLAIM_KINDS = [
  'figure',
  'number_word',
  'name',
  'place',
  'role',
  'prior_interaction',
  'relationship',
  'event',
  'usage',
  'changed_fact',
  /** Anything else the facts do not hold, said about the prospect. */
  'detail',
] as const;
export type ClaimKind = (typeof CLAIM_KINDS)[number];

export interface GroundingInput {
  subject: string;
  /** The body as the model wrote it (without our opt-out line). */
  body: string;
  /** The only evidence. */
  facts: Fact[];
  /** Names the email may use to greet and sign, which ground nothing about the prospect. */
  addressing: { prospectName?: string; senderName?: string; senderCompany?: string };
  /** The meeting times offered (their labels may appear verbatim) and the meeting's length. */
  slots: { label: string }[];
  meetingMinutes: number;
  /** An earlier Gmail thread with this person exists: the only ground for "as we discussed". */
  priorThread: boolean;
}

export interface Rejection {
  /** 1-based position of the sentence in subject + body. */
  sentence: number;
  /** The sentence as written (shown to people; never put into a prompt outside the data block). */
  text: string;
  kind: ClaimKind;
  /** Why, in words an operator understands, naming the unsupported terms. */
  reason: string;
}

// ---- the checker ------------------------------------------------------------------------

interface Term {
  text: string;
  /** Lower case, letters, digits and inner hyphens/apostrophes only. */
  word: string;
  stem: string;
  tags: ReadonlySet<string>;
  /** First word of its sentence or bullet. */
  opener: boolean;
  /** Followed by a comma or other clause break. */
  clauseEnd: boolean;
  /** The first part of a hyphenated word ("Multi" of "Multi-currency"). */
  prefix: boolean;
}

interface Sentence {
  n: number;
  text: string;
  terms: Term[];
}

interface Evidence {
  words: Set<string>;
  stems: Set<string>;
  prefixes: Set<string>;
  numbers: StatedNumber[];
  /** Numbers of the meeting on offer (slot dates and times, its length): they ground only a sentence that proposes it. */
  meetingNumbers: StatedNumber[];
  /** Words of the prospect's own record (HubSpot contact and company facts): mentioning them makes a sentence about the prospect. */
  prospectWords: Set<string>;
  /** Stems of the contact facts (job title): the only ground for a role. */
  contactStems: Set<string>;
  /** Stems of what HubSpot, Gmail and the calendar say (not our own product). */
  prospectStems: Set<string>;
  facts: { fact: Fact; stems: Set<string>; terms: Term[] }[];
  /** Stems of our own facts (the sender's product and company). */
  senderStems: Set<string>;
  /** Stems of the names that address and sign (the prospect's, the sender's, our company). */
  addressStems: Set<string>;
  /** The sender's company and the names its own facts use (products): what "our" stands for. */
  ourNames: string[];
  /** Any of ourNames in a text (with a possessive), built once per draft. */
  ourMention?: RegExp;
  /** A fact about the prospect names our company or product: they are (or were) a customer. */
  customerOfOurs: boolean;
}

const PREFIX = 5;

const stemOf = (word: string) => {
  const w = word.replace(/'s$/, '');
  return stemmer(SPELLINGS[w] ?? w);
};

function wordOf(text: string): string {
  return text
    .toLowerCase()
    .replace(/[’‘]/g, "'")
    .replace(/^[^a-z0-9$€£]+|[^a-z0-9%]+$/g, '')
    .replace(/'s$/, '');
}

function termsOf(text: string): Term[][] {
  return sentencesIn(text).map((s) => s.terms);
}

/** compromise's sentences of `text`, each with its words as terms. */
function sentencesIn(text: string): { text: string; terms: Term[] }[] {
  const out: { text: string; terms: Term[] }[] = [];
  for (const sentence of nlp(text).json({ terms: { tags: true, normal: false } }) as { text: string; terms: { text: string; pre: string; post: string; tags: string[] }[] }[]) {
    const terms: Term[] = [];
    let afterStop = true;
    for (const t of sentence.terms) {
      const parts = t.text.split(/[-/–—]+/);
      // A word after a full stop or colon opens a sentence even where the splitter did not cut ("PT. Please").
      const opens = afterStop;
      afterStop = /[.!?:;]\s*$/.test(t.post) || /^\s*[-*•]\s*$/.test(t.pre);
      // Hyphenated and slashed compounds count word by word ("Berlin-based", "ops/finance").
      for (const [p, part] of parts.entries()) {
        const word = wordOf(part);
        if (!word) continue;
        // "Multi-currency", "Pre-launch": a capitalised prefix of a lower-case word is no name.
        const prefix = (p + 1 < parts.length && /^\p{Ll}/u.test(parts[p + 1]!)) || (p + 1 === parts.length && /^[-–]$/.test(t.post.trim()));
        terms.push({ text: part.replace(/^[^\p{L}\p{N}$€£]+|[^\p{L}\p{N}%]+$/gu, ''), word, stem: stemOf(word), tags: new Set(t.tags), prefix, opener: opens || terms.length === 0, clauseEnd: /[,;:.!?()]/.test(t.post) });
      }
    }
    if (terms.length) out.push({ text: sentence.text.trim(), terms });
  }
  return out;
}

/** Greeting and signature lines address people; they claim nothing. */
const GREETING = /^\s*(hi|hello|hey|dear|good (morning|afternoon|evening)|greetings)\b[^.!?\n]{0,60}[,!:—–-]?\s*$/i;
const SIGN_OFF = /^\s*(best|cheers|thanks|thank you|many thanks|regards|kind regards|warm regards|best regards|all the best|talk soon|speak soon|sincerely|yours( truly| sincerely)?|warmly|onward|take care)( again| so much| in advance| wishes| for now)?\s*[,!.]?\s*$/iu;
/** "— Sam", "-- Sam Lee": a dash and a name alone on the line (a bullet goes on with a sentence). */
const SIGNATURE_DASH = /^\s*(—|–|--|-)\s*\p{Lu}[\p{L}.]*(\s+\p{Lu}[\p{L}.]*){0,2}\s*$/u;

const POSTSCRIPT = /^\s*p\.?\s*p?\.?\s*s\b\.?/i;

/** A line of a few words ending in a comma or "!" ("Olá Inês,", "Obrigado,", "Dr. Raman —"): a greeting or a sign-off, in any language. */
const SHORT_ADDRESS = /^\s*[^\s.!?,]+(\s+[^\s.!?,]+){0,3}\s*[,!—–]\s*$/u;

function sentencesOf(subject: string, body: string): Sentence[] {
  const sentences: Sentence[] = [];
  const add = (text: string) => {
    for (const s of sentencesIn(text)) sentences.push({ n: sentences.length + 1, text: s.text, terms: s.terms });
  };
  add(subject);
  const lines = body.split('\n');
  const firstLine = lines.findIndex((l) => l.trim());
  const signOff = lines.findIndex((l, i) => i > firstLine && (SIGN_OFF.test(l) || SIGNATURE_DASH.test(l) || SHORT_ADDRESS.test(l)));
  // The signature claims nothing; a P.S. after it is part of the email again.
  let inSignature = false;
  for (const [i, raw] of lines.entries()) {
    if (i === signOff) inSignature = true;
    if (inSignature && POSTSCRIPT.test(raw)) inSignature = false;
    if (inSignature) continue;
    const line = raw.replace(/^\s*([-*•]|\d+[.)])\s+/, '').replace(/^\s*p\.?\s*s\.?\s*[:\-–—]?\s*/i, '');
    if (!line.trim() || GREETING.test(line) || (i === firstLine && SHORT_ADDRESS.test(line))) continue;
    add(line);
  }
  return sentences;
}

/** Every number a text states: digits (with %, $, k/m/bn), number words, multipliers. */
type Unit = '%' | 'money' | '';
export interface StatedNumber {
  value: number;
  unit: Unit;
  words: boolean;
  text: string;
}

export function numbersIn(text: string): StatedNumber[] {
  const found: StatedNumber[] = [];
  // Digits glued to letters are names, not quantities ("3PL", "Q3", "B2B"); "24th" is the 24th.
  const digits = /(?<![\p{L}\p{N}.])([$€£])?\s?(\d+(?:[.,]\d+)*)(?:st|nd|rd|th)?\s?(%|percent|k|m|mm|bn|b|million|billion|thousand|x)?(?![\p{L}\p{N}])/giu;
  for (const m of text.matchAll(digits)) {
    const n = Number(m[2]!.replace(/,(?=\d{3}\b)/g, '').replace(',', '.'));
    if (!Number.isFinite(n)) continue;
    const unit = (m[3] ?? '').toLowerCase();
    const scale = unit === 'k' || unit === 'thousand' ? 1e3 : unit === 'm' || unit === 'mm' || unit === 'million' ? 1e6 : unit === 'b' || unit === 'bn' || unit === 'billion' ? 1e9 : 1;
    const kind: Unit = m[1] || /^\s*(dollars?|euros?|pounds?|usd|eur|gbp)\b/i.test(text.slice(m.index! + m[0].length)) ? 'money' : unit === '%' || unit === 'percent' || /^\s*per ?cent\b/i.test(text.slice(m.index! + m[0].length)) ? '%' : '';
    found.push({ value: n * scale, unit: kind, words: false, text: m[0].trim() });
    if (scale !== 1) found.push({ value: n, unit: kind, words: false, text: m[0].trim() });
    // "10:30" and "3-5" hold two numbers.
  }
  // compromise reads "twenty seconds" as a fraction (20/2), "seconds" being an ordinal to it.
  for (const n of nlp(text.replace(/\bseconds?\b/gi, 'secs')).numbers().json() as { text: string; number: { num: number } }[]) {
    if (!/[a-z]/i.test(n.text) || /\d/.test(n.text) || /^(a|an|one|single)$/i.test(n.text.trim())) continue;
    // Ordinals ("first", "third-party") and vague amounts ("a few", "several") are not figures.
    if (/\b(first|second|third|fourth|fifth|last|few|several|couple|many|some|dozens of)\b/i.test(n.text) || /(st|nd|rd|th)$/i.test(n.text.trim())) continue;
    found.push({ value: n.number.num, unit: /percent|per cent/i.test(n.text) ? '%' : '', words: true, text: n.text.trim() });
  }
  for (const m of text.matchAll(/\b[a-z]+\b/gi)) {
    const v = NUMBER_WORDS[m[0].toLowerCase()];
    if (v !== undefined) found.push({ value: v, unit: '', words: true, text: m[0] });
  }
  return found;
}

function evidenceOf(input: GroundingInput): Evidence {
  const ev: Evidence = { words: new Set(), stems: new Set(), prefixes: new Set(), numbers: [], meetingNumbers: [], prospectWords: new Set(), contactStems: new Set(), prospectStems: new Set(), senderStems: new Set(), addressStems: new Set(), facts: [], ourNames: [], customerOfOurs: false };
  const take = (text: string, into?: (t: Term) => void, terms: Term[] = termsOf(text).flat()) => {
    for (const t of terms) {
      ev.words.add(t.word);
      ev.stems.add(t.stem);
      if (t.word.length >= PREFIX + 1) ev.prefixes.add(t.word.slice(0, PREFIX));
      into?.(t);
    }
    ev.numbers.push(...numbersIn(text));
  };
  for (const fact of input.facts) {
    // "QuickBooks Online" may be written "QBO".
    for (const run of fact.text.match(/(?:\p{Lu}[\p{L}]*(?:\s+|$)){2,}/gu) ?? []) {
      const initials = run.trim().split(/\s+/).flatMap((w) => w.match(/\p{Lu}/gu) ?? []).join('').toLowerCase();
      if (initials.length >= 2) ev.words.add(initials);
    }
    const stems = new Set<string>();
    const aboutProspect = fact.source !== 'sender';
    // Parsed once: the fact's terms serve the indexes here and the swap check later.
    const terms = termsOf(fact.text).flat();
    take(fact.text, (t) => {
      stems.add(t.stem);
      if (aboutProspect) ev.prospectStems.add(t.stem);
      else ev.senderStems.add(t.stem);
      if (fact.source === 'hubspot:contact') ev.contactStems.add(t.stem);
      if ((fact.source === 'hubspot:company' || fact.source === 'hubspot:contact') && /^\p{Lu}/u.test(t.text) && !(t.opener && ENGLISH.has(t.word)) && !NEUTRAL_CAPITALS.has(t.word)) ev.prospectWords.add(t.word);
    }, terms);
    ev.facts.push({ fact, stems, terms });
  }
  const { prospectName, senderName, senderCompany } = input.addressing;
  if (senderCompany) ev.ourNames.push(senderCompany);
  // A name that opens one of our own facts is ours ("Forecastly connects to SAP"): the others there are partners'.
  for (const { fact, terms } of ev.facts.filter((f) => f.fact.source === 'sender')) {
    const first = terms[0];
    if (first && /^\p{Lu}/u.test(first.text) && !ENGLISH.has(first.word) && !ev.ourNames.some((n) => n.toLowerCase() === first.word)) ev.ourNames.push(first.text);
  }
  const ourWords = new Set(ev.ourNames.map((n) => wordOf(n)));
  ev.customerOfOurs = ev.facts.some(
    ({ fact, terms }) =>
      (fact.source === 'hubspot:contact' || fact.source === 'hubspot:company') && terms.some((t) => ourWords.has(t.word)) && /\b(customer|client|user|subscri|licen|trial|pilot|renew|contract|account)/i.test(fact.text),
  );
  if (ev.ourNames.length) ev.ourMention = new RegExp(`\\b(${ev.ourNames.map(escapeRegExp).join('|')})('s)?\\b`, 'gi');
  for (const name of [prospectName, senderName, senderCompany]) if (name) take(name, (t) => ev.addressStems.add(t.stem));
  for (const slot of input.slots) {
    const before = ev.numbers.length;
    take(slot.label);
    ev.meetingNumbers.push(...ev.numbers.splice(before));
    // "14:00" may be written "2pm".
    for (const m of slot.label.matchAll(/\b(\d{1,2})[:.h](\d{2})\b/g)) ev.meetingNumbers.push(...[Number(m[1]) % 12 || 12, Number(m[1]), Number(m[2])].map(plain));
  }
  ev.meetingNumbers.push(plain(input.meetingMinutes));
  // "one" is too common a word ("one of", "the one thing") to be a claim; "00" is the minutes of a time.
  ev.numbers.push(plain(1), plain(0));
  return ev;
}

const plain = (value: number): StatedNumber => ({ value, unit: '', words: false, text: String(value) });

/** A stated number is grounded by the same value, in the same unit when it has one (€6 is not six days). */
const sameNumber = (said: StatedNumber, known: StatedNumber) => Math.abs(said.value - known.value) < 1e-9 && (said.unit === '' || known.unit === said.unit);

const supported = (ev: Evidence, t: Term) =>
  ev.words.has(t.word) || ev.stems.has(t.stem) || (t.word.length >= PREFIX + 1 && ev.prefixes.has(t.word.slice(0, PREFIX)));

/** "you've" → "you": contractions are their first word. */
const bare = (word: string) => word.replace(/'(ve|ll|d|re|m|s|t)$/, '').replace(/n$/, (n, i, w) => (w.endsWith("n't") ? '' : n));

const isNumber = (t: Term) => t.tags.has('Value') || t.tags.has('Cardinal') || t.tags.has('Ordinal') || NUMBER_WORDS[t.word] !== undefined || /^\d/.test(t.word);

const isContent = (t: Term) =>
  t.word.length >= 3 && /[a-z]/.test(t.word) && !STOPWORDS.has(t.word) && !STOPWORDS.has(bare(t.word)) && !STOPWORDS.has(t.word.replace(/'/g, '')) && !isNumber(t);

/** Things, not actions: what a claim names and a paraphrase keeps. Verbs vary freely between a fact and its retelling. */
const isThing = (t: Term) => (t.tags.has('Noun') || t.tags.has('Adjective')) && !t.tags.has('Pronoun') && !t.tags.has('Verb') && !t.tags.has('Adverb');

const isGeneric = (t: Term) => GENERIC.has(t.word) || GENERIC.has(t.stem) || SCHEDULING.has(t.word) || NEUTRAL_CAPITALS.has(t.word);

/** Capitalised words that name something: not an ordinary word opening the sentence, not a calendar word or acronym of the trade. */
function isEntity(t: Term): boolean {
  if (!/^\p{Lu}/u.test(t.text) || NEUTRAL_CAPITALS.has(t.word) || /^\d/.test(t.word) || t.prefix) return false;
  if (STOPWORDS.has(t.word) || STOPWORDS.has(bare(t.word)) || STOPWORDS.has(t.word.replace(/'/g, ''))) return false;
  if (t.opener && (ENGLISH.has(t.word) || ENGLISH.has(bare(t.word))) && !t.tags.has('Person') && !t.tags.has('Place')) return false;
  return true;
}

const SECOND_PERSON = /\b(you|your|yours|yourself|yourselves|you're|you've|you'll|you'd|y'all)\b/i;

function aboutProspect(s: Sentence, ev: Evidence): boolean {
  return SECOND_PERSON.test(s.text.replace(/[’]/g, "'")) || /\bcongrat/i.test(s.text) || s.terms.some((t) => ev.prospectWords.has(t.word));
}

const CLOCK = /\b\d{1,2}([:.]\d{2})?\s?(am|pm|a\.m\.|p\.m\.)|\b\d{1,2}:\d{2}\b/i;

/** A sentence that offers or asks for the meeting: the slots' dates and times and its length belong there. */
const proposesMeeting = (s: Sentence) =>
  CLOCK.test(s.text) ||
  s.terms.some((t) => WEEKDAYS.has(t.word)) ||
  s.terms.some((t) => /^(minutes?|mins?)$/.test(t.word));

const WEEKDAYS_LIST = 'monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun'.split(' ');
const WEEKDAYS = new Set(WEEKDAYS_LIST);


/** The sentence shares at least three content words with one fact, none of its things unknown: a retelling of that fact ("launched" for "announced"). */
function retells(s: Sentence, ev: Evidence): boolean {
  const content = s.terms.filter(isContent);
  if (content.some((t) => isThing(t) && !isEventWord(t) && !supported(ev, t) && !isGeneric(t))) return false;
  return ev.facts.some((f) => f.fact.source !== 'sender' && new Set(content.filter((t) => f.stems.has(t.stem)).map((t) => t.stem)).size >= 3);
}

/** "would use our app", "to try our": an offer, not a claim of use. */
const HYPOTHETICAL = /\b(would|could|can|will|might|may|to|'d|'ll|if)\s+(\w+\s+)?$/i;

const isEventWord = (t: Term) => EVENT_STEMS.has(t.stem) || [...EVENT_STEMS].some((e) => e.length >= 5 && t.stem.startsWith(e));

/**
 * A fact retold with something swapped: the sentence and the fact share words
 * in the same order around a gap where the sentence has a thing (noun or
 * adjective) no evidence holds and the fact has a thing the sentence dropped
 * ("for food and cosmetics brands" against "for food and pharmaceutical brands").
 * Verbs are left out: a retelling changes them freely.
 */
function substitution(s: Sentence, ev: Evidence): { fact: Fact; said: string[]; was: string[] } | undefined {
  const compared = (t: Term) => isContent(t) || t.tags.has('Ordinal');
  const mine = s.terms.filter(compared);
  for (const { fact, terms: all } of ev.facts) {
    const theirs = all.filter(compared);
    const same = (a: Term, b: Term) => a.stem === b.stem || a.word === b.word;
    // Longest common subsequence of the two word lists.
    const L = Array.from({ length: mine.length + 1 }, () => new Array<number>(theirs.length + 1).fill(0));
    for (let i = mine.length - 1; i >= 0; i--) for (let j = theirs.length - 1; j >= 0; j--) L[i]![j] = same(mine[i]!, theirs[j]!) ? L[i + 1]![j + 1]! + 1 : Math.max(L[i + 1]![j]!, L[i]![j + 1]!);
    // A retelling keeps a good part of the fact's words, in order.
    if (L[0]![0]! < 3 || L[0]![0]! < 0.4 * Math.min(mine.length, theirs.length)) continue;
    const pairs: [number, number][] = [];
    for (let i = 0, j = 0; i < mine.length && j < theirs.length; ) {
      if (same(mine[i]!, theirs[j]!)) (pairs.push([i, j]), i++, j++);
      else if (L[i + 1]![j]! >= L[i]![j + 1]!) i++;
      else j++;
    }
    // The word just before a swap is the same in both ("for food and ___ brands", "a ___ production line").
    const before = (list: Term[], t: Term) => list[list.indexOf(t) - 1];
    const sameBefore = (a: Term, b: Term) => {
      const x = before(s.terms, a);
      const y = before(all, b);
      if (!x || !y) return false;
      const nx = numbersIn(x.text)[0];
      const ny = numbersIn(y.text)[0];
      // A fragment of a compound ("Wi-Fi") says nothing about what stands there.
      const fragment = (t: Term) => t.word.length < 3 && !STOPWORDS.has(t.word);
      return same(x, y) || fragment(x) || fragment(y) || (nx !== undefined && ny !== undefined && nx.value === ny.value);
    };
    const bounds: [number, number][] = [[-1, -1], ...pairs, [mine.length, theirs.length]];
    // Before the first shared word nothing is swapped.
    for (let k = 1; k + 1 < bounds.length; k++) {
      const [i1, j1] = bounds[k]!;
      const [i2, j2] = bounds[k + 1]!;
      const inner = k + 1 < bounds.length - 1;
      let said = mine.slice(i1 + 1, i2);
      let was = theirs.slice(j1 + 1, j2);
      if (!inner) {
        // After the last shared word, the swap is what ends the clause ("… and implants, so I imagine …"), in both.
        const cut = (list: Term[]) => {
          const end = list.findIndex((t) => t.clauseEnd);
          return end >= 0 ? list.slice(0, end + 1) : list;
        };
        said = cut(said);
        was = cut(was);
      }
      if (!said.length || !was.length || said.length > 3 || was.length > 3) continue;
      // Inside, a swap is about as long as what it replaces; at the end, short and no longer than it ("… for hospitals.").
      if (inner ? Math.abs(said.length - was.length) > 1 : said.length > was.length + 1) continue;
      if (!sameBefore(said[0]!, was[0]!)) continue;
      // New against this fact and what we know of the prospect: "Brno" is known, but not as where this line is.
      const inFact = (t: Term) => theirs.some((f) => same(f, t) || commonPrefix(f.word, t.word) >= 5 || (t.word.length >= 4 && f.word.length >= 4 && (f.word.startsWith(t.word) || t.word.startsWith(f.word))));
      const newThings = said.filter((t) => swappable(t, s.terms) && !inFact(t) && (isEntity(t) || CALENDAR.has(t.word) || t.tags.has('Ordinal') || !ev.prospectStems.has(t.stem)));
      const lostThings = was.filter((t) => swappable(t, all, true) && !mine.some((m) => same(m, t)));
      // The swap starts the gap; a phrase for a phrase may open with a plain word ("fast-casual cafés" for "full-service restaurants").
      const phrase = said.length >= 2 && Math.abs(said.length - was.length) <= 1;
      if (!lostThings.length || !newThings.length || (phrase ? inFact(said[0]!) : !newThings.includes(said[0]!))) continue;
      // Our own product is retold in many words; only an exclusive attribute swapped there changes it ("billed quarterly" for "billed annually").
      if (fact.source === 'sender' && !newThings.some(contrastive)) continue;
      // A swap keeps the kind of word: a name for a name, a common word for a common word.
      const name = (t: Term) => /^\p{Lu}/u.test(t.text) && !CALENDAR.has(t.word);
      if (newThings.some((n) => lostThings.some((l) => name(l) === name(n)))) return { fact, said: newThings.map((t) => t.text), was: lostThings.map((t) => t.text) };
    }
  }
  return undefined;
}

const commonPrefix = (a: string, b: string) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

/** Attributes that exclude each other (a weekday, a month, a frequency, an ordinal, a name): swapping one is never a paraphrase. */
const contrastive = (t: Term) => CALENDAR.has(t.word) || FREQUENCIES.has(t.word) || t.tags.has('Ordinal') || isEntity(t);
const FREQUENCIES = new Set('hourly daily nightly weekly fortnightly biweekly monthly quarterly yearly annually annual biannually semiannually weekdays weekends'.split(' '));

const CALENDAR = new Set([...WEEKDAYS_LIST, ...'january february march april may june july august september october november december'.split(' ')]);

/**
 * A word whose swap changes a fact: a thing (noun, adjective, ordinal,
 * weekday), or a word tagged as a verb that stands where a noun does
 * ("industrial pumps"). Generic words and stopwords change nothing.
 */
function swappable(t: Term, terms: Term[], generic = false): boolean {
  if (STOPWORDS.has(t.word)) return false;
  if (CALENDAR.has(t.word) || FREQUENCIES.has(t.word) || t.tags.has('Ordinal')) return true;
  if (!generic && isGeneric(t)) return false;
  if (isThing(t)) return true;
  const prev = terms[terms.indexOf(t) - 1];
  return t.tags.has('Verb') && /s$/.test(t.word) && Boolean(prev && (prev.tags.has('Adjective') || prev.tags.has('Determiner')));
}

/**
 * The part of a sentence that asserts something as known: what follows "I
 * read/heard/noticed/understand that", "congratulations on", or a
 * presupposing "since you", "now that", "given that" (up to the clause's end).
 */
/**
 * "I read that you…", "I saw the library…", "I understand Acme…": what is
 * reported as heard about them ("I know migrations run over" is a remark).
 */
function hearsay(text: string): RegExpExecArray | null {
  const m = /\b(?:i|we)(?:'ve| have)? (?:just )?(?:read|heard|saw|seen|noticed|understand|know|gather|learned|learnt|hear|see|spotted)\b(?: that)?( [^,;:.!?]*?)(?:[,;:.!?]|\bso\b|$)/i.exec(text);
  const about = m?.[1]?.trim() ?? '';
  return m && (/^(you|your|the|their|they)\b/i.test(about) || /^\p{Lu}/u.test(about)) ? m : null;
}

function assertedClause(text: string): string | undefined {
  const m =
    hearsay(text) ??
    /\bcongrat\w*(?: again| as well)?(?: on| to)?(.*?)(?:[,;:.!?]|\bthat's\b|$)/i.exec(text) ??
    /\b(?:since|now that|given that|as) (?:you|your)\b(.*?)(?:[,;:.!?]|$)/i.exec(text) ??
    /^(?:since|now that|given)\b(.*?)(?:[,;:.!?]|$)/i.exec(text.trim());
  return m?.[1]?.trim() || undefined;
}

/** "Two: yes, …" numbers a list; "thanks a million", "a thing or two" count nothing. */
const NUMBER_IDIOMS = /^\s*(one|two|three|four|five|first|second|third)\s*[:.)—–-]|\b(thanks a million|a million thanks|one or two|a thing or two|one of (the|our|those|these|my|your)|one way or another|second to none|at one point|in one place|one place|one click|one reply|one step)\b/gi;

const EMAIL_PARTS = /\b(one|two|three|four|five|a couple of|a few)( quick| short| brief| small| big| simple| practical| concrete| specific| key| main)? (questions?|points?|things?|ideas?|reasons?|ways?|options?|steps?|examples?|suggestions?|thoughts?|notes?|answers?|items?|benefits?|takeaways?|labels?|clicks?|minutes?)\b/gi;

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const quote = (terms: string[]) => [...new Set(terms)].map((t) => `"${t}"`).join(', ');

function judge(s: Sentence, input: GroundingInput, ev: Evidence): { kind: ClaimKind; reason: string } | undefined {
  const text = s.text.replace(/[’]/g, "'");
  const about = aboutProspect(s, ev);
  const content = s.terms.filter(isContent);
  const unsupported = content.filter((t) => !supported(ev, t));
  const specific = unsupported.filter((t) => !isGeneric(t));
  const things = specific.filter(isThing);

  const talksOfThread = INTERACTION_PATTERNS.some((p) => p.test(text));
  if (talksOfThread) {
    if (!input.priorThread) return { kind: 'prior_interaction', reason: 'refers to an earlier conversation, but there is no earlier email thread with this person' };
    // With a real thread, the way they met must be one the messages and the calendar record.
    const known = (t: Term) => CHANNEL_GROUPS.some((group) => group.has(t.stem) && [...group].some((g) => ev.prospectStems.has(g)));
    const channels = s.terms.filter((t) => CHANNEL_GROUPS.some((group) => group.has(t.stem)) && !known(t));
    if (channels.length) return { kind: 'prior_interaction', reason: `refers to an earlier ${quote(channels.map((t) => t.text))}, which no message or meeting records` };
  }
  const relation = RELATIONSHIP_PATTERNS.map((p) => text.match(p)).find(Boolean);
  if (relation) {
    const missing = termsOf(relation[0]).flat().filter((t) => isContent(t) && !supported(ev, t));
    if (missing.length) return { kind: 'relationship', reason: `states a relationship no fact records: ${quote(missing.map((t) => t.text))}` };
  }
  // Our company and product names are "our" here: "already runs Forecastly" is "already runs our".
  const asOurs = ev.ourMention ? text.replace(ev.ourMention, 'our') : text;
  const role = ROLE_PATTERNS.map((p) => asOurs.match(p)).find(Boolean);
  if (role) {
    // The sender's own role ("I'm one of our co-founders") rests on our facts; the prospect's on their HubSpot title.
    const own = /^i\b|^i'm\b/i.test(role[0].trim());
    const roleStems = own ? ev.senderStems : ev.contactStems;
    const expanded = (t: Term) => (ROLE_ACRONYMS[t.word] ?? '').split(' ').filter(Boolean);
    const held = (t: Term) => roleStems.has(t.stem) || (expanded(t).length > 0 && expanded(t).every((w) => roleStems.has(stemOf(w))));
    // Every word of the role counts ("Managing Partner" is not "Tax Partner"), not only the role noun.
    const framing = own ? /^(our|lead|run|head|manage|own|one)$/ : /^(you|your|since|because|given|role|position|seat|job|one|person|who|responsible|charge)$/;
    const missing = termsOf(role[0]).flat().filter((t) => isContent(t) && !framing.test(t.word) && !held(t) && !ev.prospectWords.has(t.word));
    const roleWord = termsOf(role[0]).flat().filter((t) => ROLE_WORDS.has(t.word) || ROLE_WORDS.has(t.word.replace(/s$/, '')));
    const missingRole = own ? [...missing, ...roleWord.filter((t) => !held(t))] : missing;
    if (missingRole.length) {
      return own
        ? { kind: 'role', reason: `gives the sender a role our own facts do not hold: ${quote(missingRole.map((t) => t.text))}` }
        : { kind: 'role', reason: `gives the prospect a role their HubSpot record does not hold: ${quote(missingRole.map((t) => t.text))}` };
    }
  }
  const ours = OUR_PRODUCT_USAGE.map((p) => asOurs.match(p)).find((m) => m && !HYPOTHETICAL.test(asOurs.slice(0, m.index)));
  if (ours && about && !ev.customerOfOurs) {
    return { kind: 'usage', reason: `says the prospect uses our product ("${ours[0].trim()}"), which no HubSpot or Gmail fact records` };
  }
  const used = USAGE_PATTERNS.map((p) => p.exec(text)).find(Boolean);
  if (used && about) {
    // What they use is named in the usage clause ("you use Xero, so the files …": Xero).
    const clause = text.slice(used.index).split(/[,;:.!?]|\b(so|and so|which|where)\b/)[0]!;
    const named = termsOf(clause).flat().filter((t) => isContent(t) && !supported(ev, t) && !isGeneric(t) && isThing(t));
    if (named.length) return { kind: 'usage', reason: `says the prospect uses something no fact records: ${quote(named.map((t) => t.text))}` };
  }
  const allowed = proposesMeeting(s) ? [...ev.numbers, ...ev.meetingNumbers] : ev.numbers;
  // "Two quick questions", "three things we do": counts of the email's own parts claim nothing.
  const ownParts = new Set(numbersIn(text.replace(EMAIL_PARTS, '').replace(NUMBER_IDIOMS, '')).map((n) => n.text));
  const numbers = numbersIn(s.text).filter((n) => !allowed.some((v) => sameNumber(n, v)) && ownParts.has(n.text));
  if (numbers.length) {
    const words = numbers.find((n) => n.words);
    return words
      ? { kind: 'number_word', reason: `states a number no fact holds: "${words.text}"` }
      : { kind: 'figure', reason: `states a figure no fact holds: ${quote(numbers.map((n) => n.text))}` };
  }
  const names = s.terms.filter((t) => isEntity(t) && !supported(ev, t));
  if (names.length) {
    const place = names.some((t) => t.tags.has('Place') || t.tags.has('City') || t.tags.has('Country') || t.tags.has('Region'));
    return { kind: place ? 'place' : 'name', reason: `names ${place ? 'a place' : 'someone or something'} no fact mentions: ${quote(names.map((t) => t.text))}` };
  }
  const changed = substitution(s, ev);
  if (changed) return { kind: 'changed_fact', reason: `restates ${changed.fact.id} but says ${quote(changed.said)} where it says ${quote(changed.was)}` };
  // The clause ends where our own product comes in ("since you use Xero and Paperloop syncs …").
  const assertedRaw = talksOfThread ? undefined : assertedClause(text);
  const ourAt = assertedRaw && ev.ourMention ? assertedRaw.search(ev.ourMention) : -1;
  const asserted = ourAt > 0 ? assertedRaw!.slice(0, ourAt) : assertedRaw;
  if (asserted && about) {
    // Things and events must be known; the verbs that tie them together vary with the telling.
    const retold = retells(s, ev);
    // What is said as known about the prospect must be known about the prospect, not about our product.
    const known = (t: Term) => ev.prospectStems.has(t.stem) || ev.addressStems.has(t.stem);
    const claim = termsOf(asserted).flat().filter((t) => isContent(t) && !known(t) && !isGeneric(t) && (isThing(t) || isEventWord(t)) && !(retold && isEventWord(t)));
    if (claim.length) {
      const events = claim.filter(isEventWord);
      return events.length
        ? { kind: 'event', reason: `states an event no fact records: ${quote(events.map((t) => t.text))}` }
        : { kind: 'detail', reason: `states something about the prospect no fact holds: ${quote(claim.map((t) => t.text))}` };
    }
  }
  if (about) {
    const events = unsupported.filter(isEventWord);
    if (events.length && !retells(s, ev)) {
      const time = text.match(TIME_MARKERS);
      return { kind: 'event', reason: `states an event no fact records: ${quote([...events.map((t) => t.text), ...(time ? [time[0]] : [])])}` };
    }
  }
  return undefined;
}

/** The sentences the checker numbers (greeting and signature left out): Rejection.sentence counts in this list. */
export function draftSentences(subject: string, body: string): string[] {
  return sentencesOf(subject, body).map((s) => s.text);
}

/** Every sentence that claims something the facts do not support. */
export function checkClaims(input: GroundingInput): Rejection[] {
  const ev = evidenceOf(input);
  const rejections: Rejection[] = [];
  for (const s of sentencesOf(input.subject, input.body)) {
    const verdict = judge(s, input, ev);
    if (verdict) rejections.push({ sentence: s.n, text: s.text, ...verdict });
  }
  return rejections;
}
