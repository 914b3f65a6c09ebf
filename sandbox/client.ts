import type { FaultRuleInput } from './faults.js';
import type { SandboxProviderName } from './types.js';

/** Typed access to the sandbox control plane, for tests, benchmarks and the CLI. */
export class SandboxClient {
  constructor(readonly url: string) {}

  async get<T = any>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  async post<T = any>(path: string, body?: unknown): Promise<T> {
    return this.call<T>('POST', path, body);
  }

  async reset(provider?: SandboxProviderName): Promise<void> {
    await this.post(`/_sandbox/reset${provider ? `?provider=${provider}` : ''}`);
  }

  async addFaults(...rules: FaultRuleInput[]): Promise<void> {
    await this.post('/_sandbox/faults', rules);
  }

  async clearFaults(provider?: SandboxProviderName): Promise<void> {
    await this.call('DELETE', `/_sandbox/faults${provider ? `?provider=${provider}` : ''}`);
  }

  async state<T = any>(provider: SandboxProviderName): Promise<T> {
    return this.get<T>(`/_sandbox/state/${provider}`);
  }

  async stats(): Promise<{ providers: Record<string, { requests: number; routes: Record<string, number>; statuses: Record<string, number> }>; injected: Record<string, Record<string, number>> }> {
    return this.get('/_sandbox/stats');
  }

  async clearStats(): Promise<void> {
    await this.call('DELETE', '/_sandbox/stats');
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`sandbox ${method} ${path} -> ${res.status}: ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }
}
