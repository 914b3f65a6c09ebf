import { readFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Where secret values come from. Config asks for secrets by their setting name
 * (e.g. `HUBSPOT_ACCESS_TOKEN`) and never logs what it gets back. A Vault or
 * cloud secret-manager provider only has to implement `get`.
 */
export interface SecretProvider {
  readonly name: string;
  get(key: string): Promise<string | undefined>;
}

export class SecretLookupError extends Error {
  constructor(
    readonly key: string,
    readonly provider: string,
    message: string,
  ) {
    super(`${key}: ${message} (secret provider "${provider}")`);
    this.name = 'SecretLookupError';
  }
}

/** Plain environment variables. */
export class EnvSecretProvider implements SecretProvider {
  readonly name = 'env';
  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}
  async get(key: string): Promise<string | undefined> {
    const value = this.env[key];
    return value === undefined || value === '' ? undefined : value;
  }
}

/**
 * Files, the way Docker and Kubernetes mount secrets: `KEY_FILE=/path` names a
 * file for one key, and a secrets directory holds one file per key (named as the
 * key or its lower-case form, e.g. /run/secrets/hubspot_access_token).
 */
export class FileSecretProvider implements SecretProvider {
  readonly name = 'files';
  constructor(
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly dir: string | undefined = env.SECRETS_DIR,
  ) {}

  async get(key: string): Promise<string | undefined> {
    const explicit = this.env[`${key}_FILE`];
    if (explicit) return this.read(key, explicit, true);
    if (!this.dir) return undefined;
    for (const name of [key, key.toLowerCase()]) {
      const value = await this.read(key, path.join(this.dir, name), false);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  private async read(key: string, file: string, required: boolean): Promise<string | undefined> {
    try {
      return (await readFile(file, 'utf8')).trim() || undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (!required && code === 'ENOENT') return undefined;
      throw new SecretLookupError(key, this.name, `cannot read ${file} (${code ?? 'error'})`);
    }
  }
}

/** Asks each provider in turn; the first that knows the key wins. */
export class ChainSecretProvider implements SecretProvider {
  readonly name: string;
  constructor(private readonly providers: SecretProvider[]) {
    this.name = providers.map((p) => p.name).join('+');
  }
  async get(key: string): Promise<string | undefined> {
    for (const provider of this.providers) {
      const value = await provider.get(key);
      if (value !== undefined) return value;
    }
    return undefined;
  }
}

export function defaultSecretProvider(env: NodeJS.ProcessEnv = process.env): SecretProvider {
  return new ChainSecretProvider([new EnvSecretProvider(env), new FileSecretProvider(env)]);
}
