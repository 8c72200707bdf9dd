import { pino, stdSerializers, type Logger } from 'pino';

export type { Logger };

// Secrets arrive in headers (webhook secret, bearer token, cookies), in query strings (Dataverse
// sends its WebhookKey as ?code=, Marketo's identity call carries client_secret), in request bodies
// of token calls and in vendor error messages that quote them. None may reach a log line, however
// deep in the logged object. Two layers: every logged object is walked before serialisation
// (secret-named keys at any depth, secret-bearing URL parameters and bearer values in any string,
// errors included), and pino's path redaction covers what the HTTP serialisers produce.

export const REDACTED = '[redacted]';

/** Paths of the serialised request/response objects (pino-http) and well-known top-level keys. */
export const redactPaths = [
  'req.headers.authorization',
  'req.headers["x-webhook-secret"]',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'headers["set-cookie"]',
  'headers["x-webhook-secret"]',
  '*.clientSecret',
  '*.client_secret',
  '*.access_token',
];

/** Keys whose value is a secret wherever they appear (headers included, any case). */
const SECRET_KEY =
  /secret|password|passwd|authorization|cookie|api[-_]?key|access[-_]?token|refresh[-_]?token|id[-_]?token|authvalue|^token$|apitoken$/i;
/** URL or form parameters that carry a secret, e.g. ?code= (Dataverse WebhookKey), &client_secret=. */
const SECRET_PARAM = /(^|[?&\s"'#;,])((?:code|client_secret|access_token|refresh_token|id_token|password|api_key|token|sig|signature)=)[^&#\s"',;]*/gi;
const BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;

/** Drops secret-bearing query parameters from a URL (or any text quoting one). */
export function redactUrl(url: string): string {
  return url.replace(SECRET_PARAM, `$1$2${REDACTED}`);
}

/** A string with its secret-bearing parameters and bearer credentials blanked out. */
export function redactText(text: string): string {
  return redactUrl(text).replace(BEARER, `$1 ${REDACTED}`);
}

const MAX_DEPTH = 10;

/** A copy of a logged value without secrets. Plain data is walked; errors are serialised first. */
export function scrub(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return redactText(value);
  if (typeof value !== 'object' || value === null) return value;
  if (depth > MAX_DEPTH || seen.has(value)) return '[…]';
  // spread: the serialised error has a prototype of its own, and only plain data is walked
  if (value instanceof Error) return scrub({ ...stdSerializers.err(value) }, depth, seen);
  if (Array.isArray(value)) {
    seen.add(value);
    return value.map((item) => scrub(item, depth + 1, seen));
  }
  if (value instanceof URL) return redactUrl(value.toString());
  if (typeof (value as { entries?: unknown }).entries === 'function' && typeof (value as { get?: unknown }).get === 'function' && !(value instanceof Map)) {
    // a fetch Headers object
    return scrub(Object.fromEntries((value as Headers).entries()), depth, seen);
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  // class instances (request/response streams) are left to pino's serialisers and path redaction
  if (proto !== Object.prototype && proto !== null && !(value instanceof Map)) return value;
  seen.add(value);
  const entries = value instanceof Map ? [...value.entries()].map(([k, v]) => [String(k), v] as const) : Object.entries(value);
  const out: Record<string, unknown> = {};
  for (const [key, item] of entries) {
    out[key] = SECRET_KEY.test(key) && item !== null && item !== undefined && typeof item !== 'boolean' ? REDACTED : scrub(item, depth + 1, seen);
  }
  return out;
}

export function createLogger(options: { level: string; pretty?: boolean; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      redact: { paths: redactPaths, censor: REDACTED },
      base: { service: 'marketo-dynamics-sync' },
      formatters: { log: (object) => scrub(object) as Record<string, unknown> },
      hooks: {
        // interpolated messages (logger.info('x %s', value)) are scrubbed as text
        logMethod(args, method) {
          method.apply(this, args.map((arg) => (typeof arg === 'string' ? redactText(arg) : arg)) as Parameters<typeof method>);
        },
      },
    },
    options.destination,
  );
}
