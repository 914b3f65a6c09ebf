import type { ProviderModule } from '../types.js';
import { google } from './google.js';
import { hubspot } from './hubspot.js';
import { openai } from './openai.js';
import { slack } from './slack.js';
import { x } from './x.js';

export const allProviders: ProviderModule<any>[] = [google, hubspot, openai, slack, x];
