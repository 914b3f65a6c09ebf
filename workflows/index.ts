// The workflow bundle's entry point: every workflow type the workers register.
export { smokeTest } from './smoke.js';
export { prospectIntake } from './intake/process.js';
export * from './harvest/process.js';
