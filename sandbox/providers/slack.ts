import type { ProviderModule } from '../types.js';

// Placeholder: replaced by the real slack stand-in.
export const slack: ProviderModule<Record<string, never>> = {
  name: 'slack',
  prefixes: ['/__slack'],
  initialState: () => ({}),
  errorFor: (_kind, status, message) => ({ status, body: { error: message } }),
  routes: () => undefined,
};
