/**
 * The deterministic "model" behind the OpenAI stand-in. It never reads
 * instructions: output is built only from the JSON the caller puts inside
 * `<context>…</context>` in a user message, so lead free text stays data and
 * prompt injection in it changes nothing. The contract is in sandbox/README.md.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Schema = Record<string, any>;

export interface ChatMessage {
  role: string;
  content?: unknown;
}

export interface Prompt {
  /** Every message's text, in order: what scripted answers' `match` is tested against. */
  text: string;
  /** The prompt without its context blocks (the instructions, which the writers ignore). */
  instructions: string;
  /** Parsed JSON of the last `<context>` block found in a user message, if any. */
  context: unknown;
}

/** Text of one message: a plain string or the text parts of a content array. */
export function messageText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .filter((part): part is { type: 'text'; text: string } => part?.type === 'text' && typeof part.text === 'string')
    .map((part) => part.text)
    .join('\n');
}

export function readPrompt(messages: ChatMessage[]): Prompt {
  let context: unknown;
  let instructions = '';
  const texts: string[] = [];
  for (const message of messages) {
    const text = messageText(message.content);
    texts.push(text);
    if (message.role !== 'user') {
      instructions += `${text}\n`;
      continue;
    }
    const blocks = contextBlocks(text);
    if (blocks.values.length > 0) context = blocks.values.at(-1);
    instructions += `${blocks.rest}\n`;
  }
  return { text: texts.join('\n\n'), instructions: instructions.trim(), context };
}

const OPEN = '<context>';
const CLOSE = '</context>';

/**
 * Finds `<context>JSON</context>` blocks. A closing tag can sit inside a JSON
 * string (lead notes may contain one), so each candidate end is tried until the
 * JSON parses; scanning resumes after the parsed block, so a fake block nested
 * in the data is never taken for the caller's own.
 */
function contextBlocks(text: string): { values: unknown[]; rest: string } {
  const values: unknown[] = [];
  let rest = '';
  let from = 0;
  for (;;) {
    const start = text.indexOf(OPEN, from);
    if (start < 0) break;
    const parsed = parseBlock(text, start + OPEN.length);
    if (!parsed) {
      rest += text.slice(from, start + OPEN.length);
      from = start + OPEN.length;
      continue;
    }
    values.push(parsed.value);
    rest += text.slice(from, start);
    from = parsed.end + CLOSE.length;
  }
  return { values, rest: rest + text.slice(from) };
}

function parseBlock(text: string, bodyStart: number): { value: unknown; end: number } | undefined {
  let end = text.indexOf(CLOSE, bodyStart);
  while (end >= 0) {
    try {
      return { value: JSON.parse(text.slice(bodyStart, end)), end };
    } catch {
      end = text.indexOf(CLOSE, end + CLOSE.length);
    }
  }
  return undefined;
}

// ---- small readers for untrusted context -------------------------------------

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() ? v.trim() : undefined);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const idOf = (v: unknown): string | undefined => (typeof v === 'number' ? String(v) : text(v));
/** Names go into a subject or greeting: one line, bounded. */
const oneLine = (v: string, max: number) => v.replace(/\s+/g, ' ').slice(0, max).trim();

export type Writer = (context: unknown) => Json | undefined;

// ---- prospect_email ----------------------------------------------------------

/**
 * `{subject, body, factsUsed}` from prospect, sender, facts, slots and reply.
 * Uses the first two facts verbatim and nothing else from the lead: notes,
 * titles and thread text in the context are never copied, and the company is
 * named only when a fact names it.
 */
export const writeProspectEmail: Writer = (context) => {
  if (!isObject(context)) return undefined;
  const prospect = isObject(context.prospect) ? context.prospect : {};
  const sender = isObject(context.sender) ? context.sender : {};
  const reply = isObject(context.reply) ? context.reply : undefined;
  const firstName = oneLine(text(prospect.name)?.split(/\s+/)[0] ?? 'there', 40);
  // A well-behaved model names the company only when a fact does: a name the lead typed grounds nothing.
  const typedCompany = text(prospect.company) && oneLine(text(prospect.company)!, 80);
  const company = typedCompany && list(context.facts).some((f) => isObject(f) && text(f.text)?.includes(typedCompany)) ? typedCompany : undefined;
  const senderName = oneLine(text(sender.name) ?? 'The team', 80);
  const senderCompany = oneLine(text(sender.company) ?? '', 80);

  const facts = list(context.facts)
    .filter(isObject)
    .map((f) => ({ id: idOf(f.id), text: text(f.text) }))
    .filter((f): f is { id: string; text: string } => Boolean(f.id && f.text))
    .slice(0, 2);
  const slots = list(context.slots)
    .filter(isObject)
    .map((s) => text(s.label))
    .filter((label): label is string => Boolean(label));

  const replySubject = reply && text(reply.subject) ? oneLine(text(reply.subject)!, 200) : undefined;
  const subject = replySubject
    ? /^re:/i.test(replySubject) ? replySubject : `Re: ${replySubject}`
    : company ? `Quick idea for ${company}` : `Quick idea from ${senderCompany || senderName}`;

  const intro = replySubject
    ? 'Following up on our conversation.'
    : `I'm ${senderName}${senderCompany ? ` from ${senderCompany}` : ''}.`;
  const factLines = facts.length > 0 ? ['A couple of things stood out to me:', ...facts.map((f) => `- ${f.text}`), ''] : [];
  const ask = slots.length > 0
    ? ['Would one of these times work for a 30-minute call?', ...slots.map((s) => `- ${s}`)]
    : ['Would you be open to a 30-minute call?'];
  const body = [
    `Hi ${firstName},`,
    '',
    intro,
    '',
    ...factLines,
    ...ask,
    '',
    'Best regards,',
    senderName,
    ...(senderCompany ? [senderCompany] : []),
  ].join('\n');
  return { subject, body, factsUsed: facts.map((f) => f.id) };
};

// ---- signal_analysis ---------------------------------------------------------

export type SignalCategory = 'buying_intent' | 'outage' | 'security' | 'bug' | 'question' | 'praise' | 'other';

/** First matching rule wins: buying intent is what the product is for, so it outranks incidents. */
const CATEGORY_RULES: { category: SignalCategory; pattern: RegExp; urgency: number }[] = [
  { category: 'buying_intent', urgency: 3, pattern: /\b(looking for|recommend(?:ation)?s?|alternatives? to|switch(?:ing)?(?: from| to| away)?|evaluating|in the market for|shopping for|any suggestions)\b/gi },
  { category: 'security', urgency: 5, pattern: /\b(breach(?:ed)?|vulnerabilit(?:y|ies)|cve(?:-\d{4}-\d+)?|exploit(?:ed)?|ransomware|zero-day|leak(?:ed)?)\b/gi },
  { category: 'outage', urgency: 4, pattern: /\b(down|outage|downtime|unavailable|degraded|not loading)\b/gi },
  { category: 'bug', urgency: 2, pattern: /\b(bugs?|broken|errors?|crash(?:es|ed|ing)?|regression|not working)\b/gi },
  { category: 'question', urgency: 1, pattern: /\?/g },
  { category: 'praise', urgency: 0, pattern: /\b(love|great|awesome|amazing|fantastic|kudos|impressed)\b/gi },
];
const POSITIVE = /\b(love|great|awesome|amazing|fantastic|excellent|happy|thanks?|kudos|impressed|nice)\b/gi;
const NEGATIVE = /\b(down|outage|broken|bugs?|errors?|crash(?:es|ed)?|breach(?:ed)?|hate|terrible|awful|worst|frustrat(?:ed|ing)|annoying|slow|fail(?:ed|s|ing)?|unusable)\b/gi;
const URGENT = /\b(urgent|asap|immediately|critical|right now)\b|!!/gi;
const STOP_WORDS = new Set(
  'the a an and or but for to of in on at by with from is are was were be been it its this that these those i we you they he she our your their my me us them not no do does did have has had can could would should will just so if as about any all what when who how why which there here than then too very really get got'.split(' '),
);

export interface SignalAnalysis {
  id: string;
  category: SignalCategory;
  sentiment: 'positive' | 'neutral' | 'negative';
  urgency: number;
  tags: string[];
  reasoning: string;
}

const matchesOf = (pattern: RegExp, value: string) => [...value.matchAll(pattern)].map((m) => m[0].toLowerCase());

export function analyseSignal(id: string, signalText: string, metrics?: unknown): SignalAnalysis {
  const rule = CATEGORY_RULES.find((r) => matchesOf(r.pattern, signalText).length > 0);
  const cues = rule ? [...new Set(matchesOf(rule.pattern, signalText))] : [];
  const positive = matchesOf(POSITIVE, signalText).length;
  const negative = matchesOf(NEGATIVE, signalText).length;
  const sentiment = positive > negative ? 'positive' : negative > positive ? 'negative' : 'neutral';
  const urgent = matchesOf(URGENT, signalText).length > 0;
  const viral = engagement(metrics) >= 100;
  const urgency = Math.min(5, (rule?.urgency ?? 0) + (urgent ? 1 : 0) + (viral ? 1 : 0));
  const category = rule?.category ?? 'other';
  const reasoning = [
    cues.length ? `Matched ${cues.map((c) => `"${c}"`).join(', ')} -> ${category}.` : 'No category keywords matched -> other.',
    `Sentiment ${sentiment} (${positive} positive, ${negative} negative cues).`,
    `Urgency ${urgency}${urgent ? ', urgent wording' : ''}${viral ? ', high engagement' : ''}.`,
  ].join(' ').slice(0, 400);
  return { id, category, sentiment, urgency, tags: tagsOf(signalText, cues), reasoning };
}

/** Lower-case keywords from the text: the matched cues first, then hashtags and content words. */
function tagsOf(signalText: string, cues: string[]): string[] {
  const words = (signalText.toLowerCase().match(/#?[\p{L}\p{N}][\p{L}\p{N}_-]*/gu) ?? []).map((w) => w.replace(/^#/, ''));
  const cueWords = cues.filter((c) => c !== '?').map((c) => c.replace(/\s+/g, '-'));
  const content = words.filter((w) => w.length >= 3 && !STOP_WORDS.has(w) && !/^\d+$/.test(w));
  return [...new Set([...cueWords, ...content])].map((t) => t.slice(0, 40)).slice(0, 8);
}

function engagement(metrics: unknown): number {
  if (!isObject(metrics)) return 0;
  return Object.values(metrics).reduce<number>((sum, v) => sum + (typeof v === 'number' && v > 0 ? v : 0), 0);
}

/** `{results}`: one analysis per input signal, same order. */
export const writeSignalAnalysis: Writer = (context) => {
  if (!isObject(context) || !Array.isArray(context.signals)) return undefined;
  const results = context.signals.map((signal, index) => {
    const s = isObject(signal) ? signal : {};
    return analyseSignal(idOf(s.id) ?? String(index), typeof s.text === 'string' ? s.text : '', s.metrics);
  });
  return { results } as unknown as Json;
};

// ---- claim_check ---------------------------------------------------------------

/**
 * `{claims}`: the grounding gate's claim checker, always satisfied. It lists
 * the first two facts as the draft's claims (what the prospect_email writer
 * states), each supported by its own id and placed in the sentence that holds
 * its text. Tests script an "unsupported" answer through /_sandbox/openai/script.
 */
export const writeClaimCheck: Writer = (context) => {
  if (!isObject(context)) return undefined;
  const draft = isObject(context.draft) ? context.draft : {};
  const sentences = list(draft.sentences).map((s) => (isObject(s) ? text(s.text) : text(s)) ?? '');
  const claims = list(context.facts)
    .filter(isObject)
    .map((f) => ({ id: idOf(f.id), text: text(f.text) }))
    .filter((f): f is { id: string; text: string } => Boolean(f.id && f.text))
    .slice(0, 2)
    .map((f) => ({ sentence: Math.max(1, sentences.findIndex((s) => s.includes(f.text)) + 1), claim: oneLine(f.text, 300), kind: 'detail', support: f.id }));
  return { claims };
};

export const writers: Record<string, Writer> = {
  prospect_email: writeProspectEmail,
  signal_analysis: writeSignalAnalysis,
  claim_check: writeClaimCheck,
};

/**
 * After fitting a writer's output to the caller's schema (which may cut the
 * body to its maxLength), keep claims honest: a fact counts as used only if
 * its text is still in the body.
 */
export const settlers: Record<string, (output: unknown, context: unknown) => unknown> = {
  prospect_email(output, context) {
    if (!isObject(output) || typeof output.body !== 'string' || !Array.isArray(output.factsUsed) || !isObject(context)) return output;
    const body = output.body;
    const textById = new Map(list(context.facts).filter(isObject).map((f) => [idOf(f.id), text(f.text)]));
    const kept = output.factsUsed.filter((id) => {
      const factText = textById.get(idOf(id));
      return factText !== undefined && body.includes(factText);
    });
    return { ...output, factsUsed: kept };
  },
};

// ---- schema-driven instances ---------------------------------------------------

const MAX_DEPTH = 8;

export interface InstanceOptions {
  /** Words strings are made of (from the prompt). */
  words: string[];
  /** Sandbox clock, for date formats. */
  now: number;
}

/**
 * An instance of `schema`, keeping whatever of `hint` fits: a writer's output
 * is passed as the hint so callers whose schema differs a little (extra field,
 * tighter maxLength) still get a valid answer; with no hint this is the generic
 * writer (required props, first enum value, prompt words, minimums, one item).
 */
export function instanceFor(root: unknown, hint: unknown, options: InstanceOptions): unknown {
  let counter = 0;
  const words = options.words.length > 0 ? options.words : ['sandbox'];
  const phrase = () => {
    const start = (counter++ * 4) % words.length;
    return words.slice(start, start + 4).join(' ');
  };

  const build = (raw: unknown, h: unknown, depth: number): unknown => {
    if (raw === true || raw === undefined || raw === null) return h !== undefined ? h : phrase();
    if (raw === false) return undefined;
    const s = resolve(raw as Schema, root, 0);
    if ('const' in s) return s.const;
    if (Array.isArray(s.enum)) return s.enum.some((e: unknown) => same(e, h)) ? h : s.enum[0];
    const branches = s.anyOf ?? s.oneOf;
    if (Array.isArray(branches)) return build(pickBranch(branches, h, depth), h, depth);
    if (Array.isArray(s.allOf)) return build(mergeAll(s), h, depth);
    switch (pickType(s, h, depth)) {
      case 'null':
        return null;
      case 'boolean':
        return typeof h === 'boolean' ? h : false;
      case 'integer':
        return numberFor(s, h, true);
      case 'number':
        return numberFor(s, h, false);
      case 'array':
        return arrayFor(s, h, depth);
      case 'object':
        return objectFor(s, h, depth);
      default:
        return stringFor(s, h);
    }
  };

  const objectFor = (s: Schema, h: unknown, depth: number) => {
    const props: Record<string, unknown> = isObject(s.properties) ? s.properties : {};
    const required: string[] = Array.isArray(s.required) ? s.required : [];
    const given = isObject(h) ? h : {};
    const out: Record<string, unknown> = {};
    for (const key of new Set([...Object.keys(props), ...required])) {
      if (!required.includes(key) && !(key in given)) continue;
      const value = build(props[key], given[key], depth + 1);
      if (value !== undefined) out[key] = value;
    }
    // An open map (no declared properties) keeps what the writer said.
    if (!isObject(s.properties) && s.additionalProperties !== false) {
      for (const [key, value] of Object.entries(given)) {
        if (!(key in out)) out[key] = s.additionalProperties === undefined ? value : build(s.additionalProperties, value, depth + 1);
      }
    }
    return out;
  };

  const arrayFor = (s: Schema, h: unknown, depth: number) => {
    const min: number = s.minItems ?? 0;
    const max: number = s.maxItems ?? Infinity;
    const items = s.items;
    let out = Array.isArray(h)
      ? h.map((item) => build(items, item, depth + 1))
      : depth >= MAX_DEPTH ? [] : [build(items, undefined, depth + 1)];
    if (s.uniqueItems) out = out.filter((v, i) => out.findIndex((w) => same(v, w)) === i);
    while (out.length < min) out.push(build(items, undefined, depth + 1));
    return out.slice(0, max);
  };

  const stringFor = (s: Schema, h: unknown) => {
    let value = typeof h === 'string' ? h : formatted(s.format, options.now) ?? phrase();
    if (typeof s.pattern === 'string') value = fitPattern(s.pattern, value, phrase());
    const chars = Array.from(value);
    if (typeof s.maxLength === 'number' && chars.length > s.maxLength) value = chars.slice(0, s.maxLength).join('');
    if (typeof s.minLength === 'number' && chars.length < s.minLength) value = value.padEnd(s.minLength, '.');
    return value;
  };

  return build(root, hint, 0);
}

function resolve(s: Schema, root: unknown, hops: number): Schema {
  if (typeof s.$ref !== 'string' || !s.$ref.startsWith('#') || hops > 20) return s;
  let target: unknown = root;
  for (const part of s.$ref.slice(1).split('/').filter(Boolean)) {
    target = isObject(target) ? target[decodeURIComponent(part).replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
  }
  return isObject(target) ? resolve(target, root, hops + 1) : {};
}

function jsonType(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

const accepts = (type: string, v: unknown) => {
  const t = jsonType(v);
  return t === type || (type === 'number' && t === 'integer');
};

function typesOf(s: Schema): string[] {
  if (Array.isArray(s.type)) return s.type;
  if (typeof s.type === 'string') return [s.type];
  if (s.properties) return ['object'];
  if (s.items) return ['array'];
  return ['string'];
}

function pickType(s: Schema, h: unknown, depth: number): string {
  const types = typesOf(s);
  const fitting = types.find((t) => accepts(t, h));
  if (fitting) return fitting;
  if (depth >= MAX_DEPTH && types.includes('null')) return 'null';
  return types.find((t) => t !== 'null') ?? types[0]!;
}

function pickBranch(branches: unknown[], h: unknown, depth: number): unknown {
  const schemas = branches.filter(isObject);
  const isNull = (b: Schema) => b.type === 'null';
  if (h !== undefined) {
    const fit = schemas.find((b) => !b.$ref && typesOf(b).some((t) => accepts(t, h)) && (!Array.isArray(b.enum) || b.enum.some((e: unknown) => same(e, h))));
    if (fit) return fit;
  }
  if (depth >= MAX_DEPTH) return schemas.find(isNull) ?? schemas[0];
  return schemas.find((b) => !isNull(b)) ?? schemas[0];
}

function mergeAll(s: Schema): Schema {
  const { allOf, ...rest } = s;
  return (allOf as unknown[]).filter(isObject).reduce<Schema>(
    (acc, part: Schema) => ({
      ...acc,
      ...part,
      properties: { ...(acc.properties ?? {}), ...(part.properties ?? {}) },
      required: [...new Set([...(acc.required ?? []), ...(part.required ?? [])])],
    }),
    rest,
  );
}

function numberFor(s: Schema, h: unknown, integer: boolean): number {
  let lo = typeof s.minimum === 'number' ? s.minimum : -Infinity;
  let hi = typeof s.maximum === 'number' ? s.maximum : Infinity;
  if (typeof s.exclusiveMinimum === 'number') lo = Math.max(lo, integer ? Math.floor(s.exclusiveMinimum) + 1 : s.exclusiveMinimum + 0.5);
  if (typeof s.exclusiveMaximum === 'number') hi = Math.min(hi, integer ? Math.ceil(s.exclusiveMaximum) - 1 : s.exclusiveMaximum - 0.5);
  if (integer) {
    lo = Math.ceil(lo);
    hi = Math.floor(hi);
  }
  let n = typeof h === 'number' ? h : Number.isFinite(lo) ? lo : Math.min(0, hi);
  if (integer) n = Math.round(n);
  n = Math.min(Math.max(n, lo), hi);
  if (typeof s.multipleOf === 'number' && s.multipleOf > 0) n = Math.ceil(n / s.multipleOf) * s.multipleOf;
  return n;
}

function formatted(format: unknown, now: number): string | undefined {
  const iso = new Date(now).toISOString();
  switch (format) {
    case 'date-time':
      return iso;
    case 'date':
      return iso.slice(0, 10);
    case 'time':
      return iso.slice(11, 19) + 'Z';
    case 'email':
      return 'sandbox@example.com';
    case 'uri':
    case 'url':
      return 'https://example.com/sandbox';
    case 'uuid':
      return '00000000-0000-4000-8000-000000000000';
    default:
      return undefined;
  }
}

/** Best effort only: a pattern no candidate fits is left to the validator to report. */
function fitPattern(pattern: string, value: string, fallback: string): string {
  let re: RegExp;
  try {
    re = new RegExp(pattern, 'u');
  } catch {
    return value;
  }
  return [value, fallback, 'sandbox', 'a', 'A', '0', 'a1', ''].find((c) => re.test(c)) ?? value;
}

function same(a: unknown, b: unknown): boolean {
  return a === b || (typeof a === 'object' && a !== null && JSON.stringify(a) === JSON.stringify(b));
}

/** Words strings are made of: the instructions' words, else any prompt words. */
export function promptWords(prompt: Prompt): string[] {
  const pick = (s: string) => s.match(/[\p{L}\p{N}]{3,}/gu)?.slice(0, 40) ?? [];
  const fromInstructions = pick(prompt.instructions);
  return fromInstructions.length > 0 ? fromInstructions : pick(prompt.text);
}
