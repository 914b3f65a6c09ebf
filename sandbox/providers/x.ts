import type { ProviderModule } from '../types.js';

// Placeholder: replaced by the real x stand-in.
export const x: ProviderModule<Record<string, never>> = {
  name: 'x',
  prefixes: ['/__x'],
  initialState: () => ({}),
  errorFor: (_kind, status, message) => ({ status, body: { error: message } }),
  routes: () => undefined,
};
