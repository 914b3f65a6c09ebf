import type { ProviderModule } from '../types.js';

// Placeholder: replaced by the real hubspot stand-in.
export const hubspot: ProviderModule<Record<string, never>> = {
  name: 'hubspot',
  prefixes: ['/__hubspot'],
  initialState: () => ({}),
  errorFor: (_kind, status, message) => ({ status, body: { error: message } }),
  routes: () => undefined,
};
