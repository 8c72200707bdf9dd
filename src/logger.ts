import { pino, type Logger } from 'pino';

export type { Logger };

// Secrets arrive in headers (webhook secret, bearer token) and, for Dataverse's WebhookKey, in
// the query string: none of them may reach a log line.
export const redactPaths = [
  'req.headers.authorization',
  'req.headers["x-webhook-secret"]',
  'req.headers.cookie',
  '*.clientSecret',
  '*.client_secret',
  '*.access_token',
];

export function createLogger(options: { level: string; pretty?: boolean }): Logger {
  return pino({
    level: options.level,
    redact: { paths: redactPaths, censor: '[redacted]' },
    base: { service: 'marketo-dynamics-sync' },
  });
}

/** Drops secret-bearing query parameters (Dataverse sends its WebhookKey as ?code=) from a URL. */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:code|access_token|client_secret)=)[^&#]*/gi, '$1[redacted]');
}
