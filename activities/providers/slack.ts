import { LogLevel, WebClient, type WebClientOptions } from '@slack/web-api';
import { IncomingWebhook, type IncomingWebhookDefaultArguments } from '@slack/webhook';
import type { Config } from '../../lib/config/config.js';

type SlackConfig = Config['providers']['slack'];

/**
 * A Slack Web API client for the configured endpoint (the sandbox or slack.com).
 * Retries are Temporal's job, not the SDK's: by default the SDK does not retry
 * and rejects rate-limited calls at once (WebAPIRateLimitedError carries
 * retryAfter) instead of sleeping inside an activity for up to 30 minutes.
 */
export function createSlack(cfg: SlackConfig, opts: WebClientOptions = {}): WebClient {
  return new WebClient(cfg.botToken, {
    slackApiUrl: cfg.baseUrl,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    logLevel: LogLevel.WARN,
    ...opts,
  });
}

/** Incoming webhook for the configured URL (no SDK retries by default, as above). */
export function createSlackWebhook(cfg: SlackConfig, defaults: IncomingWebhookDefaultArguments = {}): IncomingWebhook {
  return new IncomingWebhook(cfg.webhookUrl, { retryConfig: { retries: 0 }, ...defaults });
}
