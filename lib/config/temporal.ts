import { readFile } from 'node:fs/promises';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import proto from '@temporalio/proto';
import type { DataConverter, PayloadCodec } from '@temporalio/common';
import type { Config } from './config.js';
import { ConfigError } from './settings.js';
import { EncryptionCodec } from './payload-codec.js';
import type { Logger } from './logger.js';
import { SEARCH_ATTRIBUTES } from '../domain/search-attributes.js';

type TemporalConfig = Config['temporal'];

export async function tlsOptions(cfg: TemporalConfig) {
  if (!cfg.tls) return undefined;
  if (cfg.tlsCertPath && cfg.tlsKeyPath) {
    return { clientCertPair: { crt: await readFile(cfg.tlsCertPath), key: await readFile(cfg.tlsKeyPath) } };
  }
  return true as const;
}

/**
 * Production may reach Temporal without mTLS or an API key only through
 * TEMPORAL_ALLOW_INSECURE (lib/config/config.ts); every process that connects says so
 * at start, at error level, so the choice is never silent.
 */
export function warnIfInsecure(config: Pick<Config, 'env' | 'temporal'>, log: Logger): void {
  const t = config.temporal;
  if (config.env !== 'production' || t.apiKey || (t.tlsCertPath && t.tlsKeyPath)) return;
  log.error(
    { temporalAddress: t.address, setting: 'TEMPORAL_ALLOW_INSECURE' },
    'Temporal connection is NOT authenticated (no mTLS client certificate, no API key): anyone who reaches Temporal can start and signal intakes. ' +
      'Decisions still need signed approval tokens, but keep Temporal on a private network or configure TEMPORAL_TLS_CERT_PATH/TEMPORAL_TLS_KEY_PATH or TEMPORAL_API_KEY.',
  );
}

/**
 * The codec every client and worker of this deployment encrypts payloads with
 * (lib/config/payload-codec.ts). Without keys (development without `npm start`'s
 * key file) nothing may talk to Temporal: a client without the codec would
 * write personal data in clear and could not read what the workers wrote.
 */
export function payloadCodecFor(cfg: Pick<TemporalConfig, 'payloadKeys'>): PayloadCodec {
  if (!cfg.payloadKeys) {
    throw new ConfigError([
      {
        setting: 'PAYLOAD_KEYS',
        message:
          'not set, and no development key in DATA_DIR/dev-payload-keys: Temporal payloads are encrypted with it. ' +
          '`npm start` makes that file once; elsewhere set PAYLOAD_KEYS to "id:base64-key", e.g. "k1:$(openssl rand -base64 32)"',
      },
    ]);
  }
  return new EncryptionCodec(cfg.payloadKeys);
}

/** The data converter of every Client and Worker: Temporal's JSON payloads, encrypted. */
export function dataConverterFor(cfg: Pick<TemporalConfig, 'payloadKeys'>): DataConverter {
  return { payloadCodecs: [payloadCodecFor(cfg)] };
}

export async function connectClient(cfg: TemporalConfig): Promise<Client> {
  const dataConverter = dataConverterFor(cfg);
  const connection = await Connection.connect({
    address: cfg.address,
    tls: await tlsOptions(cfg),
    apiKey: cfg.apiKey,
    connectTimeout: '5s',
  });
  return new Client({ connection, namespace: cfg.namespace, dataConverter });
}

export async function connectWorker(cfg: TemporalConfig): Promise<NativeConnection> {
  return NativeConnection.connect({ address: cfg.address, tls: await tlsOptions(cfg), apiKey: cfg.apiKey });
}

const KEYWORD = proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;

/**
 * Registers the custom search attributes when the server lacks them (a cluster
 * that was not started by our dev bootstrap). Idempotent; on Temporal Cloud the
 * operator API is closed, so a refusal is reported, not fatal.
 */
export async function ensureSearchAttributes(client: Client, namespace: string, log?: Logger): Promise<void> {
  const operator = client.connection.operatorService;
  try {
    const existing = await operator.listSearchAttributes({ namespace });
    const missing = SEARCH_ATTRIBUTES.filter((key) => !(key.name in (existing.customAttributes ?? {})));
    if (missing.length === 0) return;
    await operator.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((key) => [key.name, KEYWORD])),
    });
    log?.info({ added: missing.map((k) => k.name) }, 'registered search attributes');
  } catch (err) {
    log?.warn({ err: (err as Error).message }, 'could not check or register search attributes; register them with the cluster admin');
  }
}
