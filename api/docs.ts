import { createRequire } from 'node:module';
import path from 'node:path';
import express, { type Request, type Response } from 'express';
import type { OpenApiDocument } from './openapi.js';

/**
 * `/openapi.json` and the browsable docs at `/docs`: Swagger UI served from the
 * installed swagger-ui-dist package (no CDN; works offline and under helmet's
 * default Content-Security-Policy, since every script is a same-origin file).
 */

const require = createRequire(import.meta.url);
const SWAGGER_DIR = path.dirname(require.resolve('swagger-ui-dist/package.json'));
const ASSETS = ['swagger-ui-bundle.js', 'swagger-ui.css', 'favicon-32x32.png', 'favicon-16x16.png'];

const PAGE = `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Prospector API</title>
    <link rel="stylesheet" href="./swagger-ui.css">
    <link rel="icon" type="image/png" href="./favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"><noscript>This page needs JavaScript; the raw document is at <a href="../openapi.json">/openapi.json</a>.</noscript></div>
    <script src="./swagger-ui-bundle.js"></script>
    <script src="./init.js"></script>
  </body>
</html>
`;

// validatorUrl: null keeps the page from calling the public validator service.
const INIT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: new URL('../openapi.json', window.location.href).href,
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
    displayOperationId: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout'
  });
});
`;

export function openApiHandler(document: () => OpenApiDocument) {
  let body: string | undefined;
  return (req: Request, res: Response, next: () => void) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    if (req.path !== '/') return next();
    body ??= JSON.stringify(document());
    res.type('application/json').set('cache-control', 'no-cache').send(body);
  };
}

export function docsRouter(): express.Router {
  const router = express.Router();
  router.get('/', (req, res) => {
    // Relative asset URLs need the trailing slash.
    if (!req.originalUrl.split('?')[0]!.endsWith('/')) return res.redirect(301, `${req.baseUrl}/`);
    res.type('html').set('cache-control', 'no-cache').send(PAGE);
  });
  router.get('/init.js', (_req, res) => void res.type('application/javascript').send(INIT));
  for (const asset of ASSETS) {
    router.get(`/${asset}`, (_req, res) => res.sendFile(path.join(SWAGGER_DIR, asset), { maxAge: '1d' }));
  }
  return router;
}
