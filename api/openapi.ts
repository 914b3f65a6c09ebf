import { z, type ZodType } from 'zod';
import type { AnyRoute } from './route.js';

/**
 * The OpenAPI 3.1 document, generated from the same route declarations and
 * zod schemas that validate requests (api/route.ts), so the two cannot drift.
 * Request parts are described as zod accepts them (io: input), responses as
 * handlers produce them (io: output).
 */

type JsonSchema = Record<string, unknown>;

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  servers: { url: string }[];
  paths: Record<string, Record<string, OperationObject>>;
  components: { schemas: Record<string, JsonSchema>; securitySchemes: Record<string, unknown>; responses: Record<string, unknown>; headers: Record<string, unknown> };
  tags: { name: string }[];
}

export interface OperationObject {
  operationId: string;
  summary: string;
  tags: string[];
  security: Record<string, string[]>[];
  parameters?: unknown[];
  requestBody?: unknown;
  responses: Record<string, { description: string; headers?: Record<string, unknown>; content?: Record<string, { schema: JsonSchema }> }>;
  'x-required-scope'?: string;
  'x-auth'?: string;
  'x-rate-limit-bucket'?: string;
}

export const PROBLEM_SCHEMA: JsonSchema = {
  type: 'object',
  description: 'RFC 9457 problem details',
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer', minimum: 100, maximum: 599 },
    detail: { type: 'string' },
    instance: { type: 'string' },
    errors: { type: 'array', items: { type: 'object', properties: { field: { type: 'string' }, message: { type: 'string' } }, required: ['field', 'message'] } },
  },
  required: ['type', 'title', 'status'],
};

const PROBLEM_CONTENT = { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } };
const RATE_HEADERS = {
  'RateLimit-Limit': { $ref: '#/components/headers/RateLimit-Limit' },
  'RateLimit-Remaining': { $ref: '#/components/headers/RateLimit-Remaining' },
  'RateLimit-Reset': { $ref: '#/components/headers/RateLimit-Reset' },
};

/** "/prospects/:id" → "/v1/prospects/{id}" */
export function openApiPath(route: Pick<AnyRoute, 'path'>): string {
  return `/v1${route.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`;
}

export function buildOpenApi(routes: AnyRoute[], options: { version?: string; serverUrl?: string } = {}): OpenApiDocument {
  const schemas: Record<string, JsonSchema> = { Problem: PROBLEM_SCHEMA };
  const paths: OpenApiDocument['paths'] = {};
  for (const route of routes) {
    const path = openApiPath(route);
    paths[path] ??= {};
    paths[path][route.method] = operation(route, schemas);
  }
  const tags = [...new Set(routes.flatMap((r) => r.tags))].sort().map((name) => ({ name }));
  return {
    openapi: '3.1.0',
    info: {
      title: 'Prospector API',
      version: options.version ?? '0.1.0',
      description: [
        'Inbound leads and buying signals turned into human-approved sales emails.',
        '',
        'Authenticate with an API key: `Authorization: Bearer pk_…` (or `X-API-Key: pk_…`). Each operation names the scope it needs',
        '(`x-required-scope`); `admin` grants every scope. Missing or invalid keys get 401, keys without the scope 403.',
        'Every keyed response carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; over the limit you get 429 with `Retry-After`.',
        'Errors are RFC 9457 problem+json.',
      ].join('\n'),
    },
    servers: [{ url: options.serverUrl ?? '/' }],
    paths,
    components: {
      schemas,
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'API key as a bearer token: `Authorization: Bearer pk_…`' },
        apiKeyHeader: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'API key in the X-API-Key header' },
      },
      responses: {
        BadRequest: { description: 'Invalid request: the problem names each invalid field', content: PROBLEM_CONTENT },
        Unauthorized: {
          description: 'No API key, or an unknown, revoked or expired one',
          headers: { 'WWW-Authenticate': { schema: { type: 'string' }, description: 'Bearer challenge (RFC 6750)' } },
          content: PROBLEM_CONTENT,
        },
        Forbidden: { description: 'The key lacks the scope this operation needs', content: PROBLEM_CONTENT },
        TooManyRequests: {
          description: 'Rate limit exceeded for this key on this route (or across routes)',
          headers: { ...RATE_HEADERS, 'Retry-After': { schema: { type: 'integer' }, description: 'Seconds to wait' } },
          content: PROBLEM_CONTENT,
        },
        PayloadTooLarge: { description: 'Body over the size limit', content: PROBLEM_CONTENT },
        Problem: { description: 'Any other error, as problem+json', content: PROBLEM_CONTENT },
      },
      headers: {
        'RateLimit-Limit': { schema: { type: 'integer' }, description: 'Requests allowed in the current window' },
        'RateLimit-Remaining': { schema: { type: 'integer' }, description: 'Requests left in the current window' },
        'RateLimit-Reset': { schema: { type: 'integer' }, description: 'Seconds until the window resets' },
      },
    },
    tags,
  };
}

function operation(route: AnyRoute, schemas: Record<string, JsonSchema>): OperationObject {
  const scope = typeof route.auth === 'object' ? route.auth.scope : undefined;
  const keyed = scope !== undefined;
  const op: OperationObject = {
    operationId: route.operationId,
    summary: route.summary,
    tags: route.tags,
    security: scope ? [{ bearerAuth: [scope] }, { apiKeyHeader: [scope] }] : [],
    responses: {},
    ...(scope ? { 'x-required-scope': scope } : { 'x-auth': route.auth as string }),
    'x-rate-limit-bucket': route.rateLimit ?? route.operationId,
  };
  const parameters = [...parametersOf(route.params, 'path', schemas, route), ...parametersOf(route.query, 'query', schemas, route)];
  if (parameters.length > 0) op.parameters = parameters;
  if (route.body) {
    op.requestBody = { required: !route.body.safeParse(undefined).success, content: { 'application/json': { schema: toSchema(route.body, 'input', schemas, route) } } };
  }
  for (const [status, spec] of Object.entries(route.responses)) {
    const problem = Number(status) >= 400;
    const contentType = spec.contentType ?? (problem ? 'application/problem+json' : 'application/json');
    const schema = spec.schema ? toSchema(spec.schema, 'output', schemas, route) : problem ? { $ref: '#/components/schemas/Problem' } : undefined;
    op.responses[status] = {
      description: spec.description,
      ...(keyed && !problem ? { headers: RATE_HEADERS } : {}),
      ...(schema ? { content: { [contentType]: { schema } } } : {}),
    };
  }
  const standard: Record<string, string> = { 400: 'BadRequest', 429: 'TooManyRequests' };
  if (keyed) Object.assign(standard, { 401: 'Unauthorized', 403: 'Forbidden' });
  if (route.body) standard[413] = 'PayloadTooLarge';
  for (const [status, name] of Object.entries(standard)) {
    op.responses[status] ??= { $ref: `#/components/responses/${name}` } as never;
  }
  op.responses.default ??= { $ref: '#/components/responses/Problem' } as never;
  return op;
}

function parametersOf(schema: ZodType | undefined, where: 'path' | 'query', schemas: Record<string, JsonSchema>, route: AnyRoute) {
  if (!schema) {
    if (where !== 'path') return [];
    // Undeclared path params are still part of the path.
    return [...route.path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
  }
  const json = toSchema(schema, 'input', schemas, route);
  const properties = (json.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(properties).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    ...(typeof s.description === 'string' ? { description: s.description } : {}),
    schema: s,
  }));
}

/**
 * zod → JSON Schema 2020-12 (what OpenAPI 3.1 uses). Named schemas (`.meta({ id })`)
 * become components; other local $defs are kept under a name made unique by route.
 */
function toSchema(schema: ZodType, io: 'input' | 'output', schemas: Record<string, JsonSchema>, route: AnyRoute): JsonSchema {
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any', reused: 'inline' }) as JsonSchema;
  delete json.$schema;
  const defs = (json.$defs ?? {}) as Record<string, JsonSchema>;
  delete json.$defs;
  const rename = new Map<string, string>();
  for (const name of Object.keys(defs)) {
    const named = !name.startsWith('__');
    rename.set(name, named ? (io === 'input' ? `${name}Input` : name) : `${route.operationId}_${name.replace(/^_+/, '')}_${io}`);
  }
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite);
    if (!value || typeof value !== 'object') return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/$defs/') ? `#/components/schemas/${rename.get(v.slice(8)) ?? v.slice(8)}` : rewrite(v);
    }
    return out;
  };
  for (const [name, def] of Object.entries(defs)) schemas[rename.get(name)!] = rewrite(def) as JsonSchema;
  return rewrite(json) as JsonSchema;
}
