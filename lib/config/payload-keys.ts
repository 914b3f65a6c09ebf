import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { inspect } from 'node:util';
import { ConfigError, type SettingProblem } from './settings.js';

/**
 * The keys that encrypt Temporal payloads (lib/config/payload-codec.ts), and
 * the rules of their settings. PAYLOAD_KEYS, a secret, lists them as
 * `id:base64` pairs separated by commas, each key 32 random bytes
 * (AES-256). PAYLOAD_KEY_ID names the key that encrypts (the first one when
 * unset); every listed key decrypts. A rotation puts the new key first and
 * keeps the old ones listed for as long as a history or schedule may still
 * hold payloads they encrypted.
 *
 * Messages name keys by id only: no key material reaches an error, a log line
 * or `JSON.stringify(config)`.
 */

/** A key id travels in every payload's metadata: short, printable, no separators. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const KEY_BYTES = 32;

/** Where `npm start` keeps the development key (DATA_DIR/dev-payload-keys), made once per data directory. */
export const DEV_PAYLOAD_KEYS_FILE = 'dev-payload-keys';

export class PayloadKeyring {
  readonly #keys: ReadonlyMap<string, Buffer>;

  constructor(
    keys: ReadonlyMap<string, Buffer>,
    /** The key new payloads are encrypted with. */
    readonly encryptKeyId: string,
    /** `configured`: PAYLOAD_KEYS; `development`: the dev stack's key file. */
    readonly source: 'configured' | 'development',
  ) {
    if (!keys.has(encryptKeyId)) throw new Error(`no key with id "${encryptKeyId}"`);
    this.#keys = keys;
  }

  get ids(): string[] {
    return [...this.#keys.keys()];
  }

  key(id: string): Buffer | undefined {
    return this.#keys.get(id);
  }

  get encryptKey(): Buffer {
    return this.#keys.get(this.encryptKeyId)!;
  }

  /** What logs and JSON may show: ids, never keys. */
  toJSON() {
    return { encryptKeyId: this.encryptKeyId, ids: this.ids, source: this.source };
  }

  [inspect.custom]() {
    return `PayloadKeyring(encrypts with "${this.encryptKeyId}", decrypts ${this.ids.map((id) => `"${id}"`).join(', ')})`;
  }
}

/**
 * Parses `id:base64[,id:base64...]`. Throws an Error whose message names the
 * entry (by position and id) and what is wrong with it, never its value.
 */
export function parsePayloadKeys(text: string, options: { encryptKeyId?: string; source?: PayloadKeyring['source'] } = {}): PayloadKeyring {
  const entries = text.split(/[,\n]/).map((e) => e.trim()).filter(Boolean);
  if (entries.length === 0) throw new Error('expected one or more "id:base64-key" entries');
  const keys = new Map<string, Buffer>();
  entries.forEach((entry, i) => {
    const colon = entry.indexOf(':');
    const id = colon > 0 ? entry.slice(0, colon) : '';
    if (!KEY_ID_PATTERN.test(id)) {
      throw new Error(`entry ${i + 1} must be "id:base64-key" with an id of letters, digits, ".", "_" or "-" (at most 64)`);
    }
    const encoded = entry.slice(colon + 1).trim();
    // Node's base64 decoder reads the URL-safe alphabet too.
    const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(encoded) ? Buffer.from(encoded, 'base64') : undefined;
    if (!key || key.length !== KEY_BYTES) {
      throw new Error(`key "${id}" must be ${KEY_BYTES} bytes in base64 (e.g. \`openssl rand -base64 32\`)${key ? `, got ${key.length} bytes` : ''}`);
    }
    if (keys.has(id)) throw new Error(`key id "${id}" appears twice`);
    keys.set(id, key);
  });
  const encryptKeyId = options.encryptKeyId ?? entries[0]!.slice(0, entries[0]!.indexOf(':'));
  if (!keys.has(encryptKeyId)) throw new PayloadKeyIdError(encryptKeyId, [...keys.keys()]);
  return new PayloadKeyring(keys, encryptKeyId, options.source ?? 'configured');
}

class PayloadKeyIdError extends Error {
  constructor(id: string, ids: string[]) {
    super(`"${id}" names no key in PAYLOAD_KEYS (its ids: ${ids.join(', ')})`);
  }
}

/** A new `id:base64` entry for PAYLOAD_KEYS. */
export function generatePayloadKey(id = `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}`): string {
  if (!KEY_ID_PATTERN.test(id)) throw new Error(`invalid key id "${id}"`);
  return `${id}:${randomBytes(KEY_BYTES).toString('base64')}`;
}

/**
 * The keyring from the settings. PAYLOAD_KEYS wins; production requires it.
 * Elsewhere the dev stack's key file under DATA_DIR stands in, so the worker,
 * the API and the CLI of one `npm start` share a key made on this machine (no
 * key is built into the code). Without either, no keyring: the processes that
 * reach Temporal stop with a message saying so (lib/config/temporal.ts).
 * Throws ConfigError naming PAYLOAD_KEYS or PAYLOAD_KEY_ID.
 */
export function payloadKeysFrom(input: { secret?: string; keyId?: string; production: boolean; dataDir: string }): PayloadKeyring | undefined {
  const problems: SettingProblem[] = [];
  const parse = (text: string, source: PayloadKeyring['source'], setting: string) => {
    try {
      return parsePayloadKeys(text, { encryptKeyId: input.keyId, source });
    } catch (err) {
      problems.push({ setting: err instanceof PayloadKeyIdError ? 'PAYLOAD_KEY_ID' : setting, message: (err as Error).message });
      return undefined;
    }
  };
  let keyring: PayloadKeyring | undefined;
  if (input.secret !== undefined) {
    keyring = parse(input.secret, 'configured', 'PAYLOAD_KEYS');
  } else if (input.production) {
    problems.push({
      setting: 'PAYLOAD_KEYS',
      message: 'required in production: Temporal payloads (lead notes, email text, drafts) are encrypted with it. Give "id:base64-key", e.g. "k1:$(openssl rand -base64 32)"',
    });
  } else {
    const file = path.join(input.dataDir, DEV_PAYLOAD_KEYS_FILE);
    const text = readIfPresent(file);
    if (text !== undefined) keyring = parse(text, 'development', `PAYLOAD_KEYS (from ${file})`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return keyring;
}

function readIfPresent(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError([{ setting: 'PAYLOAD_KEYS', message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code})` }]);
  }
}

/**
 * For the local stack: makes sure DATA_DIR/dev-payload-keys holds a key (mode
 * 0600), made once and kept with the data it encrypts. `created` is true the
 * first time.
 */
export async function ensureDevPayloadKeys(dataDir: string): Promise<{ file: string; created: boolean; keyring: PayloadKeyring }> {
  const file = path.join(dataDir, DEV_PAYLOAD_KEYS_FILE);
  await mkdir(dataDir, { recursive: true });
  let created = true;
  try {
    // `wx`: of two starts racing, one writes and the other keeps what it wrote.
    await writeFile(file, `${generatePayloadKey(`dev-${randomBytes(3).toString('hex')}`)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    created = false;
  }
  return { file, created, keyring: payloadKeysFrom({ production: false, dataDir })! };
}
