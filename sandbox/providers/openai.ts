import { randomBytes } from 'node:crypto';
import type { Request, Response, Router } from 'express';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import formatsModule from 'ajv-formats';
import { z } from 'zod';
import type { ProviderContext, ProviderModule, WireError } from '../types.js';
import { instanceFor, messageText, promptWords, readPrompt, settlers, writers, type ChatMessage, type Prompt } from './openai-writers.js';

/**
 * OpenAI stand-in: chat completions (with structured outputs) and models, in
 * OpenAI's wire format, answered by the deterministic writers in
 * openai-writers.ts. Tests can queue scripted answers to play a misbehaving
 * model. The contract callers rely on is written down in sandbox/README.md.
 */

const PREFIX = '/openai/v1';
const MAX_CALLS_KEPT = 500;
/** Whole prompts are large: fewer are kept than call records. */
const MAX_REQUESTS_KEPT = 50;
const MODELS = ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1-mini', 'gpt-4.1', 'gpt-5-mini'];

export interface ScriptedAnswer {
  id: number;
  match?: string;
  schema?: string;
  /** A string is sent as is (may be malformed JSON); `{refusal}` is a refusal; any other object is sent as JSON. */
  content: string | Record<string, unknown>;
  finishReason?: 'stop' | 'length' | 'content_filter';
  remaining: number;
}

export interface CallRecord {
  schema: string | null;
  format: 'json_schema' | 'json_object' | 'text';
  model: string;
  promptChars: number;
  scripted: boolean;
  at: string;
}

/** One request as the caller sent it: what tests read to see exactly what a model was told. */
export interface RequestRecord {
  schema: string | null;
  model: string;
  messages: { role: string; content: string }[];
  at: string;
}

export interface OpenAIState {
  scripts: ScriptedAnswer[];
  /** The latest calls (bounded); totals stay exact. */
  calls: CallRecord[];
  /** The latest requests' messages (bounded further). */
  requests: RequestRecord[];
  totals: { calls: number; bySchema: Record<string, number>; tokens: { prompt: number; completion: number; total: number } };
}

const freshState = (): OpenAIState => ({
  scripts: [],
  calls: [],
  requests: [],
  totals: { calls: 0, bySchema: {}, tokens: { prompt: 0, completion: 0, total: 0 } },
});

// ---- errors in OpenAI's shape ------------------------------------------------

class RequestError extends Error {
  constructor(
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly status = 400,
  ) {
    super(message);
  }
}

function openAIError(status: number, message: string, type: string, param: string | null, code: string | null): WireError {
  return { status, body: { error: { message, type, param, code } } };
}

const errorFor: ProviderModule<OpenAIState>['errorFor'] = (kind, status, message, extra) => {
  const param = typeof extra?.param === 'string' ? extra.param : null;
  const code = typeof extra?.code === 'string' ? extra.code : null;
  switch (kind) {
    case 'rate_limit': {
      const seconds = Number(extra?.retryAfterSeconds ?? 1);
      const wire = openAIError(
        429,
        `Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in ${seconds}s.`,
        'requests',
        null,
        'rate_limit_exceeded',
      );
      wire.headers = {
        'retry-after': String(seconds),
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': `${seconds}s`,
        'x-ratelimit-limit-tokens': '200000',
        'x-ratelimit-remaining-tokens': '200000',
        'x-ratelimit-reset-tokens': '0s',
      };
      return wire;
    }
    case 'unauthorized':
      return openAIError(401, message, 'invalid_request_error', null, 'invalid_api_key');
    case 'not_found':
    case 'bad_request':
      return openAIError(status, message, 'invalid_request_error', param, code);
    default:
      return openAIError(status, message, 'server_error', null, code);
  }
};

// ---- request validation (like OpenAI's) ----------------------------------------

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'];

type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; name: string; schema?: Record<string, unknown>; strict: boolean };

interface CompletionRequest {
  model: string;
  messages: ChatMessage[];
  format: ResponseFormat;
  n: number;
}

function parseRequest(body: unknown): CompletionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new RequestError('We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.');
  }
  const b = body as Record<string, unknown>;
  if (b.stream === true) throw new RequestError('The sandbox does not support stream=true.', 'stream', 'unsupported_value');
  if (typeof b.model !== 'string' || !b.model) throw new RequestError('you must provide a model parameter');
  if (b.messages === undefined) throw new RequestError("Missing required parameter: 'messages'.", 'messages', 'missing_required_parameter');
  if (!Array.isArray(b.messages)) throw new RequestError("Invalid type for 'messages': expected an array of objects.", 'messages', 'invalid_type');
  if (b.messages.length === 0) {
    throw new RequestError("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", 'messages', 'empty_array');
  }
  const messages = b.messages.map(checkMessage);
  const n = b.n === undefined || b.n === null ? 1 : Number(b.n);
  if (!Number.isInteger(n) || n < 1 || n > 8) throw new RequestError(`Invalid 'n': must be an integer between 1 and 8.`, 'n', 'invalid_value');
  const format = parseFormat(b.response_format);
  if (format.type === 'json_object' && !messages.some((m) => /json/i.test(JSON.stringify(m.content ?? '')))) {
    throw new RequestError("'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.", 'messages');
  }
  return { model: b.model, messages, format, n };
}

function checkMessage(raw: unknown, i: number): ChatMessage {
  const at = `messages[${i}]`;
  if (typeof raw !== 'object' || raw === null) throw new RequestError(`Invalid type for '${at}': expected an object.`, at, 'invalid_type');
  const m = raw as Record<string, unknown>;
  if (m.role === undefined) throw new RequestError(`Missing required parameter: '${at}.role'.`, `${at}.role`, 'missing_required_parameter');
  if (typeof m.role !== 'string' || !ROLES.includes(m.role)) {
    throw new RequestError(
      `Invalid value: '${String(m.role)}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.`,
      `${at}.role`,
      'invalid_value',
    );
  }
  if (m.content === undefined && m.role !== 'assistant') {
    throw new RequestError(`Missing required parameter: '${at}.content'.`, `${at}.content`, 'missing_required_parameter');
  }
  return { role: m.role, content: m.content };
}

function parseFormat(raw: unknown): ResponseFormat {
  if (raw === undefined || raw === null) return { type: 'text' };
  const f = raw as Record<string, unknown>;
  if (f.type === 'text' || f.type === 'json_object') return { type: f.type };
  if (f.type !== 'json_schema') {
    throw new RequestError(
      `Invalid value: '${String(f.type)}'. Supported values are: 'json_object', 'json_schema', and 'text'.`,
      'response_format.type',
      'invalid_value',
    );
  }
  const js = f.json_schema as Record<string, unknown> | undefined;
  if (!js || typeof js !== 'object') {
    throw new RequestError("Missing required parameter: 'response_format.json_schema'.", 'response_format.json_schema', 'missing_required_parameter');
  }
  if (js.name === undefined) {
    throw new RequestError("Missing required parameter: 'response_format.json_schema.name'.", 'response_format.json_schema.name', 'missing_required_parameter');
  }
  if (typeof js.name !== 'string' || !/^[a-zA-Z0-9_-]{1,64}$/.test(js.name)) {
    throw new RequestError(
      "Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
      'response_format.json_schema.name',
      'invalid_value',
    );
  }
  const schema = js.schema as Record<string, unknown> | undefined;
  const strict = js.strict === true;
  if (schema !== undefined) {
    if (typeof schema !== 'object' || schema === null) {
      throw new RequestError(`Invalid schema for response_format '${js.name}': schema must be an object.`, 'response_format', 'invalid_json_schema');
    }
    if (strict) checkStrict(js.name, schema);
    compiled(js.name, schema); // an uncompilable schema is the caller's 400, as with OpenAI
  }
  return { type: 'json_schema', name: js.name, schema, strict };
}

/** OpenAI's strict-mode rules: an object root, and every object closed with all its properties required. */
function checkStrict(name: string, root: Record<string, unknown>) {
  const fail = (path: string[], detail: string) => {
    const context = `(${path.map((p) => `'${p}'`).join(', ')}${path.length === 1 ? ',' : ''})`;
    throw new RequestError(`Invalid schema for response_format '${name}': In context=${context}, ${detail}`, 'response_format', 'invalid_json_schema');
  };
  if (root.type !== 'object') {
    throw new RequestError(
      `Invalid schema for response_format '${name}': schema must be a JSON Schema of 'type: "object"', got 'type: "${String(root.type)}"'.`,
      'response_format',
      'invalid_json_schema',
    );
  }
  const visit = (node: unknown, path: string[]) => {
    if (typeof node !== 'object' || node === null) return;
    const s = node as Record<string, any>;
    const isObjectSchema = s.type === 'object' || (Array.isArray(s.type) && s.type.includes('object')) || s.properties !== undefined;
    if (isObjectSchema && !s.$ref) {
      if (s.additionalProperties !== false) fail(path, "'additionalProperties' is required to be supplied and to be false.");
      const keys = Object.keys(s.properties ?? {});
      const missing = keys.filter((k) => !(Array.isArray(s.required) && s.required.includes(k)));
      if (missing.length) {
        fail(path, `'required' is required to be supplied and to be an array including every key in properties. Missing '${missing[0]}'.`);
      }
    }
    for (const [key, child] of Object.entries(s.properties ?? {})) visit(child, [...path, 'properties', key]);
    if (s.items) visit(s.items, [...path, 'items']);
    for (const group of ['anyOf', 'allOf', 'oneOf'] as const) {
      if (Array.isArray(s[group])) s[group].forEach((child: unknown, i: number) => visit(child, [...path, group, String(i)]));
    }
    for (const defs of ['$defs', 'definitions'] as const) {
      for (const [key, child] of Object.entries(s[defs] ?? {})) visit(child, [...path, defs, key]);
    }
  };
  visit(root, []);
}

// ---- schema validation of our own answers ------------------------------------

const addFormats = formatsModule as unknown as typeof formatsModule.default;
const draft7 = addFormats(new Ajv({ strict: false, allErrors: true, logger: false }));
const draft2020 = addFormats(new Ajv2020({ strict: false, allErrors: true, logger: false }));
const validators = new Map<string, ValidateFunction>();

function compiled(name: string, schema: Record<string, unknown>): ValidateFunction {
  const key = JSON.stringify(schema);
  let validate = validators.get(key);
  if (validate) return validate;
  const ajv = /2020-12|2019-09/.test(String(schema.$schema ?? '')) ? draft2020 : draft7;
  try {
    validate = ajv.compile(schema);
  } catch (err) {
    throw new RequestError(`Invalid schema for response_format '${name}': ${(err as Error).message}`, 'response_format', 'invalid_json_schema');
  }
  if (validators.size > 200) validators.clear();
  validators.set(key, validate);
  return validate;
}

// ---- answering -----------------------------------------------------------------

interface Answer {
  content: string | null;
  refusal: string | null;
  finishReason: 'stop' | 'length' | 'content_filter';
  scripted: boolean;
}

class SandboxBug extends Error {}

function takeScript(ctx: ProviderContext<OpenAIState>, prompt: Prompt, format: ResponseFormat): ScriptedAnswer | undefined {
  const schemaName = format.type === 'json_schema' ? format.name : undefined;
  const script = ctx.state.scripts.find(
    (s) => (s.match === undefined || prompt.text.includes(s.match)) && (s.schema === undefined || s.schema === schemaName),
  );
  if (!script) return undefined;
  script.remaining--;
  if (script.remaining <= 0) ctx.state.scripts.splice(ctx.state.scripts.indexOf(script), 1);
  ctx.changed();
  return script;
}

function scriptedAnswer(script: ScriptedAnswer): Answer {
  const finishReason = script.finishReason ?? 'stop';
  const c = script.content;
  if (typeof c === 'string') return { content: c, refusal: null, finishReason, scripted: true };
  if (typeof c.refusal === 'string' && Object.keys(c).length === 1) return { content: null, refusal: c.refusal, finishReason, scripted: true };
  return { content: JSON.stringify(c), refusal: null, finishReason, scripted: true };
}

function writtenAnswer(prompt: Prompt, format: ResponseFormat, model: string, messageCount: number, now: number): Answer {
  const done = (content: string): Answer => ({ content, refusal: null, finishReason: 'stop', scripted: false });
  if (format.type === 'text') {
    return done(`Sandbox answer from ${model}: read ${messageCount} message(s), ${prompt.text.length} characters.`);
  }
  if (format.type === 'json_object') {
    return done(JSON.stringify({ summary: promptWords(prompt).slice(0, 12).join(' ') }));
  }
  const written = writers[format.name]?.(prompt.context);
  if (!format.schema) return done(JSON.stringify(written ?? {}));
  const fitted = instanceFor(format.schema, written, { words: promptWords(prompt), now });
  const settled = settlers[format.name]?.(fitted, prompt.context) ?? fitted;
  const validate = compiled(format.name, format.schema);
  // Settling can only drop claims; if the caller's schema forbids that (minItems), the fitted answer stands.
  const output = validate(settled) ? settled : fitted;
  if (!validate(output)) {
    const problems = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
    throw new SandboxBug(`Sandbox bug: the '${format.name}' writer produced output that does not match the given schema (${problems}).`);
  }
  return done(JSON.stringify(output));
}

const tokens = (chars: number) => Math.ceil(chars / 4);

function record(ctx: ProviderContext<OpenAIState>, req: CompletionRequest, prompt: Prompt, answer: Answer, completionChars: number) {
  const schema = req.format.type === 'json_schema' ? req.format.name : null;
  const totals = ctx.state.totals;
  const promptTokens = tokens(prompt.text.length);
  const completionTokens = tokens(completionChars);
  totals.calls++;
  const key = schema ?? `(${req.format.type})`;
  totals.bySchema[key] = (totals.bySchema[key] ?? 0) + 1;
  totals.tokens.prompt += promptTokens;
  totals.tokens.completion += completionTokens;
  totals.tokens.total += promptTokens + completionTokens;
  ctx.state.calls.push({
    schema,
    format: req.format.type,
    model: req.model,
    promptChars: prompt.text.length,
    scripted: answer.scripted,
    at: new Date(ctx.now()).toISOString(),
  });
  if (ctx.state.calls.length > MAX_CALLS_KEPT) ctx.state.calls.splice(0, ctx.state.calls.length - MAX_CALLS_KEPT);
  // A state file written before requests were kept has none.
  const requests = (ctx.state.requests ??= []);
  requests.push({ schema, model: req.model, messages: req.messages.map((m) => ({ role: m.role, content: messageText(m.content) })), at: new Date(ctx.now()).toISOString() });
  if (requests.length > MAX_REQUESTS_KEPT) requests.splice(0, requests.length - MAX_REQUESTS_KEPT);
  ctx.changed();
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

function completion(ctx: ProviderContext<OpenAIState>, req: CompletionRequest, prompt: Prompt, answer: Answer) {
  const completionChars = (answer.content ?? answer.refusal ?? '').length;
  const usage = record(ctx, req, prompt, answer, completionChars);
  const message = { role: 'assistant', content: answer.content, refusal: answer.refusal, annotations: [] };
  return {
    id: `chatcmpl-sbx${String(ctx.nextId('completion')).padStart(8, '0')}`,
    object: 'chat.completion',
    created: Math.floor(ctx.now() / 1000),
    model: req.model,
    choices: Array.from({ length: req.n }, (_, index) => ({ index, message, logprobs: null, finish_reason: answer.finishReason })),
    usage: {
      ...usage,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    },
    service_tier: 'default',
    system_fingerprint: 'fp_sandbox',
  };
}

function authorised(req: Request, res: Response, ctx: ProviderContext<OpenAIState>): boolean {
  const token = /^Bearer\s+(\S.*)$/i.exec(req.get('authorization') ?? '')?.[1]?.trim();
  if (token) return true;
  ctx.fail(
    res,
    'unauthorized',
    401,
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
  );
  return false;
}

/** Headers OpenAI sends on every answer; the SDK exposes x-request-id as `_request_id`. */
function standardHeaders(res: Response) {
  res.set({
    'x-request-id': `req_sbx${randomBytes(8).toString('hex')}`,
    'openai-processing-ms': '1',
    'x-ratelimit-limit-requests': '500',
    'x-ratelimit-remaining-requests': '499',
    'x-ratelimit-reset-requests': '120ms',
  });
}

function sendRequestError(res: Response, err: RequestError) {
  const wire = openAIError(err.status, err.message, 'invalid_request_error', err.param, err.code);
  res.status(wire.status).json(wire.body);
}

function chatCompletions(ctx: ProviderContext<OpenAIState>) {
  return (req: Request, res: Response) => {
    if (!authorised(req, res, ctx)) return;
    standardHeaders(res);
    try {
      const request = parseRequest(req.body);
      const prompt = readPrompt(request.messages);
      const script = takeScript(ctx, prompt, request.format);
      const answer = script
        ? scriptedAnswer(script)
        : writtenAnswer(prompt, request.format, request.model, request.messages.length, ctx.now());
      res.json(completion(ctx, request, prompt, answer));
    } catch (err) {
      if (err instanceof RequestError) return sendRequestError(res, err);
      if (err instanceof SandboxBug) return ctx.fail(res, 'error', 500, err.message, { code: 'sandbox_writer_invalid' });
      throw err;
    }
  };
}

const modelObject = (id: string) => ({ id, object: 'model', created: 1_715_367_049, owned_by: 'system' });

// ---- control plane ---------------------------------------------------------------

const scriptSchema = z.object({
  match: z.string().min(1).optional(),
  schema: z.string().min(1).optional(),
  content: z.union([z.string(), z.record(z.string(), z.unknown())]),
  finishReason: z.enum(['stop', 'length', 'content_filter']).optional(),
  times: z.number().int().positive().default(1),
});

export const openai: ProviderModule<OpenAIState> = {
  name: 'openai',
  prefixes: [PREFIX],
  initialState: freshState,
  errorFor,
  routes(router: Router, ctx) {
    router.post(`${PREFIX}/chat/completions`, chatCompletions(ctx));
    router.get(`${PREFIX}/models`, (req, res) => {
      if (!authorised(req, res, ctx)) return;
      standardHeaders(res);
      res.json({ object: 'list', data: MODELS.map(modelObject) });
    });
    router.get(`${PREFIX}/models/:model`, (req, res) => {
      if (!authorised(req, res, ctx)) return;
      const id = String(req.params.model);
      if (!MODELS.includes(id)) {
        return ctx.fail(res, 'not_found', 404, `The model '${id}' does not exist`, { param: 'model', code: 'model_not_found' });
      }
      res.json(modelObject(id));
    });
    router.all(`${PREFIX}/{*rest}`, (req, res) => {
      ctx.fail(res, 'not_found', 404, `Invalid URL (${req.method} ${req.originalUrl.split('?')[0]!.replace('/openai', '')})`);
    });
  },
  control(router, ctx) {
    router.post('/script', (req, res) => {
      const parsed = scriptSchema.safeParse(req.body);
      if (!parsed.success) return void res.status(400).json({ error: 'invalid script', issues: parsed.error.issues });
      const { times, ...rest } = parsed.data;
      const script: ScriptedAnswer = { id: ctx.nextId('script'), ...rest, remaining: times };
      ctx.state.scripts.push(script);
      ctx.changed();
      res.status(201).json(script);
    });
    router.get('/scripts', (_req, res) => void res.json(ctx.state.scripts));
    router.delete('/scripts', (_req, res) => {
      ctx.state.scripts.length = 0;
      ctx.changed();
      res.json({ ok: true });
    });
    router.get('/calls', (_req, res) => void res.json(ctx.state.calls));
    router.get('/requests', (_req, res) => void res.json(ctx.state.requests ?? []));
    router.get('/stats', (_req, res) => void res.json(ctx.state.totals));
  },
};
