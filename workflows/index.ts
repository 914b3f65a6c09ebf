// The workflow bundle's entry point: every workflow type the workers register.
export { smokeTest } from './smoke.js';
export * from './intake.js';
export * from './harvest.js';
