import type { ProviderModule } from '../types.js';

// Placeholder: replaced by the real google stand-in.
export const google: ProviderModule<Record<string, never>> = {
  name: 'google',
  prefixes: ['/__google'],
  initialState: () => ({}),
  errorFor: (_kind, status, message) => ({ status, body: { error: message } }),
  routes: () => undefined,
};
