import type { ProviderModule } from '../types.js';

// Placeholder: replaced by the real openai stand-in.
export const openai: ProviderModule<Record<string, never>> = {
  name: 'openai',
  prefixes: ['/__openai'],
  initialState: () => ({}),
  errorFor: (_kind, status, message) => ({ status, body: { error: message } }),
  routes: () => undefined,
};
