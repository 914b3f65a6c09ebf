import type { Request, RequestHandler, Response } from 'express';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import type { OpenApiDocument } from '../openapi.js';
import type { AnyRoute, RouteMiddleware } from '../route.js';

/**
 * Test-mode check that every response matches the published OpenAPI document:
 * its status is declared (or covered by `default`), its content type is the
 * declared one, and its JSON body validates against the declared schema.
 * Off in production; tests turn it on through createSecurity's options.
 */

export interface ContractViolation {
  operationId: string;
  method: string;
  path: string;
  status: number;
  problem: string;
}

const DOC_ID = 'https://prospector.dev/openapi.json';

export function contractChecker(document: OpenApiDocument, onViolation: (v: ContractViolation) => void): RouteMiddleware {
  const ajv = new Ajv2020({ strict: false, allErrors: true, logger: false, validateFormats: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  ajv.addSchema({ ...document, $id: DOC_ID });
  const compiled = new Map<string, ValidateFunction>();

  const validatorFor = (pointer: string) => {
    let fn = compiled.get(pointer);
    if (!fn) {
      fn = ajv.compile({ $ref: `${DOC_ID}#${pointer}` });
      compiled.set(pointer, fn);
    }
    return fn;
  };

  return (route: AnyRoute): RequestHandler[] => [
    (req: Request, res: Response, next: () => void) => {
      let body: unknown;
      let sawJson = false;
      const json = res.json.bind(res);
      res.json = (value: unknown) => {
        sawJson = true;
        body = value === undefined ? undefined : JSON.parse(JSON.stringify(value));
        return json(value);
      };
      res.on('finish', () => {
        const problem = check(document, route, res.statusCode, String(res.getHeader('content-type') ?? ''), sawJson, body, validatorFor);
        if (problem) onViolation({ operationId: route.operationId, method: req.method, path: req.originalUrl, status: res.statusCode, problem });
      });
      next();
    },
  ];
}

function check(
  document: OpenApiDocument,
  route: AnyRoute,
  status: number,
  contentTypeHeader: string,
  sawJson: boolean,
  body: unknown,
  validatorFor: (pointer: string) => ValidateFunction,
): string | undefined {
  const pathKey = `/v1${route.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`;
  const op = document.paths[pathKey]?.[route.method];
  if (!op) return 'operation missing from the OpenAPI document';
  const key = String(status) in op.responses ? String(status) : 'default';
  let pointer = `/paths/${escape(pathKey)}/${route.method}/responses/${key}`;
  let response = op.responses[key] as { $ref?: string; content?: Record<string, unknown> } | undefined;
  if (!response) return `status ${status} is not declared`;
  if (key === 'default' && status < 400) return `status ${status} is not declared (default covers errors only)`;
  if (response.$ref) {
    const name = response.$ref.split('/').pop()!;
    pointer = `/components/responses/${escape(name)}`;
    response = (document.components.responses as Record<string, typeof response>)[name];
  }
  const contentType = contentTypeHeader.split(';')[0]!.trim().toLowerCase();
  const content = response?.content ?? {};
  if (Object.keys(content).length === 0) {
    return sawJson && body !== undefined ? `status ${status} declares no body but one was sent` : undefined;
  }
  if (!(contentType in content)) return `content type "${contentType || 'none'}" is not one of ${Object.keys(content).join(', ')}`;
  if (!contentType.includes('json')) return undefined;
  if (!sawJson) return undefined;
  const validate = validatorFor(`${pointer}/content/${escape(contentType)}/schema`);
  if (validate(body)) return undefined;
  return `body does not match the schema: ${(validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ')}`;
}

function escape(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}
