import { validate as isValidCron } from 'node-cron';
import { z } from 'zod';
import { DEFAULT_SYNC_FILTER, parseSyncFilter, type SyncFilterRule } from './sync/sync-filter.ts';

// The one place that reads the environment. Parsed once in main.ts and passed down; every bad
// variable is reported at once, by name, with what it must be.

const blankAsUnset = (value: unknown) => (typeof value === 'string' && value.trim() === '' ? undefined : value);
const optionalString = z.preprocess(blankAsUnset, z.string().optional());
const syncFilter = z.preprocess(
  blankAsUnset,
  z
    .string()
    .default(DEFAULT_SYNC_FILTER)
    .transform((text, ctx) => {
      const rule = parseSyncFilter(text);
      if ('error' in rule) {
        ctx.addIssue({ code: 'custom', message: rule.error });
        return z.NEVER;
      }
      return rule;
    }),
);

const int = (min: number, max: number, fallback: number) =>
  z.preprocess(
    blankAsUnset,
    z.coerce
      .number({ error: `must be a whole number from ${min} to ${max}` })
      .int({ error: `must be a whole number from ${min} to ${max}` })
      .min(min, { error: `must be at least ${min}` })
      .max(max, { error: `must be at most ${max}` })
      .default(fallback),
  );
const httpsOrHttpUrl = z.preprocess(
  blankAsUnset,
  z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .transform((url) => url.replace(/\/+$/, ''))
    .optional(),
);
const cron = (fallback: string) =>
  z.preprocess(
    blankAsUnset,
    z
      .string()
      .default(fallback)
      .refine((expression) => expression.trim().toLowerCase() === 'off' || isValidCron(expression), {
        error: 'must be a node-cron expression such as "*/5 * * * *", or "off"',
      })
      // "off": this replica never schedules it (requestSweep and `npm run sweep` still work)
      .transform((expression) => (expression.trim().toLowerCase() === 'off' ? undefined : expression)),
  );
const secret = z.preprocess(
  blankAsUnset,
  z.string().min(16, { error: 'must be at least 16 characters (a random shared secret)' }).optional(),
);

const environmentSchema = z
  .object({
    NODE_ENV: z.preprocess(blankAsUnset, z.enum(['development', 'production', 'test']).default('development')),
    PORT: int(0, 65_535, 3000),
    HOST: z.preprocess(blankAsUnset, z.string().default('0.0.0.0')),
    LOG_LEVEL: z.preprocess(
      blankAsUnset,
      z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    ),
    /** largest webhook or GraphQL body accepted; Dataverse caps its webhook payloads at 256 KB */
    HTTP_BODY_LIMIT_KB: int(16, 10_240, 512),
    /** how long SIGTERM waits for in-flight requests and work before closing anyway */
    SHUTDOWN_TIMEOUT_MS: int(1_000, 600_000, 25_000),
    /**
     * how long "Sync Person to Microsoft" may take before its webhook answers 202 queued: Marketo
     * gives a webhook 30 s; the call itself goes on under its (renewed) lease
     */
    SYNC_PERSON_BUDGET_MS: int(100, 29_000, 20_000),

    DATABASE_URL: z.preprocess(
      blankAsUnset,
      z
        .string()
        .regex(/^postgres(ql)?:\/\//, { error: 'must be a postgresql:// URL (leave unset for the embedded database)' })
        .optional(),
    ),
    DATA_DIR: z.preprocess(blankAsUnset, z.string().default('./data')),
    DATABASE_POOL_SIZE: int(1, 200, 10),

    MARKETO_BASE_URL: httpsOrHttpUrl,
    MARKETO_CLIENT_ID: optionalString,
    MARKETO_CLIENT_SECRET: optionalString,
    // Every budget setting is the share of the WHOLE deployment: replicas divide it among themselves
    // (src/connectors/budget/, docs/budgets.md), so adding a replica never adds calls.
    /**
     * the deployment's Marketo calls in any 20 s, bucket included; Adobe advises half of the
     * instance's 100, since all integrations share it (4 at least: a bucket of 2 and a drip)
     */
    MARKETO_CALLS_PER_20S: int(4, 100, 50),
    /** the deployment's Marketo calls in flight (the instance allows 10 for every integration) */
    MARKETO_MAX_CONCURRENT: int(1, 10, 5),
    /** the instance's daily API quota (50,000 unless Adobe raised it); the deployment never asks for more */
    MARKETO_DAILY_QUOTA: int(1, 10_000_000, 50_000),

    DYNAMICS_URL: httpsOrHttpUrl,
    DYNAMICS_TENANT_ID: optionalString,
    DYNAMICS_CLIENT_ID: optionalString,
    DYNAMICS_CLIENT_SECRET: optionalString,
    DYNAMICS_TOKEN_URL: httpsOrHttpUrl,
    /** the share of Dataverse's 6,000 requests per 5 minutes (per application user) the deployment spends */
    DYNAMICS_REQUESTS_PER_5MIN: int(1, 1_000_000, 5_400),
    /** the deployment's requests in flight; Dataverse refuses above 52 per user */
    DYNAMICS_MAX_CONCURRENT: int(1, 52, 16),
    /** the share of Dataverse's 1,200,000 ms of execution time per 5 minutes the deployment spends */
    DYNAMICS_EXECUTION_MS_PER_5MIN: int(1_000, 100_000_000, 1_080_000),
    /** per-call timeout of the vendor clients; unset: Marketo 30-300 s by endpoint, Dynamics 120 s */
    MARKETO_TIMEOUT_MS: z.preprocess(blankAsUnset, z.coerce.number().int().min(100).max(600_000).optional()),
    DYNAMICS_TIMEOUT_MS: z.preprocess(blankAsUnset, z.coerce.number().int().min(100).max(600_000).optional()),
    /**
     * `MSCRM.SuppressDuplicateDetection` on the records the sync creates: "true" (Dataverse's Web API
     * default: duplicate rules are not applied) or "false" (the org's published duplicate rules apply,
     * and a create they match is refused with 0x80040333, logged like a business rule's refusal)
     */
    DYNAMICS_SUPPRESS_DUPLICATE_DETECTION: z.preprocess(blankAsUnset, z.enum(['true', 'false']).default('true')),

    MARKETO_WEBHOOK_SECRET: secret,
    DYNAMICS_WEBHOOK_SECRET: secret,
    GRAPHQL_API_TOKEN: secret,
    /**
     * production mode (no API token is ever made up, no GraphiQL, masked errors): "true" or
     * "false"; unset: production exactly when real credentials are set. NODE_ENV does not decide it.
     */
    PRODUCTION: z.preprocess(blankAsUnset, z.enum(['true', 'false']).optional()),
    /**
     * sandbox mode only: the deployment's one shared sandbox (`sandbox` CLI, the compose `sandbox`
     * service); replicas use its simulators, webhook secrets and API token instead of their own
     */
    SANDBOX_URL: httpsOrHttpUrl,
    /** serve GET /metrics on this port only, without a token; unset: on PORT, with an API token */
    METRICS_PORT: z.preprocess(blankAsUnset, z.coerce.number().int().min(0).max(65_535).optional()),

    /**
     * the condition a Dynamics lead / contact must meet to sync (src/sync/sync-filter.ts), e.g.
     * `statuscode in (1, 2)` or `_owningbusinessunit_value eq <guid>`; default `new_synctomkto ne false`
     */
    SYNC_FILTER_LEAD: syncFilter,
    SYNC_FILTER_CONTACT: syncFilter,
    SYNC_SWEEP_CRON: cron('*/5 * * * *'),
    SYNC_FULL_CRON: cron('0 3 * * *'),
    /** a sweep stops early rather than push Marketo's daily usage past this share of the quota */
    SYNC_SWEEP_QUOTA_SHARE: z.preprocess(blankAsUnset, z.coerce.number().gt(0).max(1).default(0.75)),
    INBOX_BATCH_SIZE: int(1, 1_000, 100),
    /**
     * webhooks waiting to be stored on this replica before Dataverse deliveries get 503 with
     * Retry-After (and Sync Person queues instead of calling out); Marketo's get as many again
     * before one is shed, since Marketo never retries. Bounds the intake's memory.
     */
    INTAKE_QUEUE_LIMIT: int(10, 1_000_000, 5_000),
    /**
     * visibility timeout: renewed by a heartbeat while the worker lives, so a claimed event whose
     * worker died is claimable again within this (the embedded database reclaims at start-up)
     */
    INBOX_LEASE_SECONDS: int(3, 3_600, 12),
    INBOX_MAX_ATTEMPTS: int(1, 100, 8),
    INBOX_POLL_MS: int(10, 60_000, 200),
    /** per-record lease of one sync, renewed by the same heartbeat; after a crash the record is busy until it expires */
    SYNC_RECORD_LOCK_SECONDS: int(3, 3_600, 12),
    /** retention: DONE change events are deleted this many days after they completed */
    RETENTION_DONE_EVENTS_DAYS: int(1, 3_650, 14),
    /** retention: activity log entries, by age */
    RETENTION_ACTIVITY_DAYS: int(1, 36_500, 400),
    /** retention: finished sweep runs, by age */
    RETENTION_SYNC_RUN_DAYS: int(1, 36_500, 90),
    /** retention: audit entries (operator actions), by age */
    RETENTION_AUDIT_DAYS: int(1, 36_500, 400),
    /**
     * retention: a DEAD change event's payload (webhook body: personal data) is replaced by a
     * redaction marker this many days after it died; the event stays replayable (the engine reads
     * both systems afresh, the payload is only a hint)
     */
    RETENTION_DEAD_PAYLOAD_DAYS: int(1, 3_650, 30),
    /** when the leader prunes; "off": never on this replica */
    RETENTION_CRON: cron('17 * * * *'),
    /** rows per DELETE statement: small enough never to hold up intake */
    RETENTION_BATCH_SIZE: int(100, 100_000, 5_000),
    /** Marketo boolean set to true when the linked Dynamics record is deleted; "none" turns it off */
    MARKETO_DELETED_FLAG_FIELD: z.preprocess(blankAsUnset, z.string().default('microsoftIsDeleted')),

    /**
     * Express's "trust proxy": "false" (default; the client is the TCP peer), "true" (any proxy),
     * a hop count ("1"), or addresses/subnets ("loopback, 10.0.0.0/8"). Behind a TLS proxy it makes
     * the console's cookie Secure and the sign-in limit count clients, not the proxy.
     */
    TRUST_PROXY: z.preprocess(
      blankAsUnset,
      z
        .string()
        .default('false')
        .transform((value, ctx): boolean | number | string => {
          const text = value.trim().toLowerCase();
          if (text === 'false') return false;
          if (text === 'true') return true;
          if (/^\d{1,2}$/.test(text)) return Number(text);
          if (/^[\w.:/]+(\s*,\s*[\w.:/]+)*$/.test(text)) return text;
          ctx.addIssue({ code: 'custom', message: 'must be true, false, a hop count, or comma-separated addresses/subnets' });
          return z.NEVER;
        }),
    ),
    /**
     * key of the erasure list's HMACs (>= 32 characters, the same on every replica). Unset: a key
     * stored in the database at first start is used, and a dump then lets its reader test guesses
     * against the list. Set it before the first erasure: a new key no longer recognises old entries.
     */
    ERASURE_KEY: z.preprocess(blankAsUnset, z.string().min(32, { error: 'must be at least 32 characters (a random key)' }).optional()),
    /** console sign-in attempts per client address per 15 minutes, across replicas */
    LOGIN_ATTEMPTS_PER_15MIN: int(1, 10_000, 20),
    /** per token per minute: queries that read Marketo or Dynamics live (fieldLineage) or refresh metadata */
    VENDOR_READS_PER_TOKEN_PER_MIN: int(1, 100_000, 30),
  });

// Cross-field rules run on the raw values, so they are reported together with per-field errors.
function crossFieldProblems(source: Record<string, string | undefined>): { variable: string; message: string }[] {
  const isSet = (name: string) => blankAsUnset(source[name]) !== undefined;
  const problems: { variable: string; message: string }[] = [];
  const groups = {
    MARKETO: ['MARKETO_BASE_URL', 'MARKETO_CLIENT_ID', 'MARKETO_CLIENT_SECRET'],
    DYNAMICS: ['DYNAMICS_URL', 'DYNAMICS_TENANT_ID', 'DYNAMICS_CLIENT_ID', 'DYNAMICS_CLIENT_SECRET'],
  } as const;
  const configured = { MARKETO: false, DYNAMICS: false };
  for (const system of ['MARKETO', 'DYNAMICS'] as const) {
    const names = groups[system];
    const present = names.filter(isSet);
    configured[system] = present.length > 0;
    if (present.length > 0 && present.length < names.length) {
      for (const name of names.filter((n) => !isSet(n))) {
        problems.push({ variable: name, message: `required once any ${system}_* credential is set` });
      }
    }
  }
  // Half-simulated would push simulated data into a real system: both or neither.
  if (configured.MARKETO !== configured.DYNAMICS) {
    problems.push({
      variable: configured.MARKETO ? 'DYNAMICS_URL' : 'MARKETO_BASE_URL',
      message: 'set both Marketo and Dynamics credentials, or neither for sandbox mode (built-in simulators)',
    });
  }
  if (configured.MARKETO && configured.DYNAMICS) {
    for (const name of ['MARKETO_WEBHOOK_SECRET', 'DYNAMICS_WEBHOOK_SECRET']) {
      if (!isSet(name)) problems.push({ variable: name, message: 'required when connected to real systems' });
    }
  }
  return problems;
}

export type Environment = z.infer<typeof environmentSchema>;

/** every variable the service reads (docker-compose.yml passes each through; .env.example documents each) */
export const CONFIG_VARIABLES = Object.keys(environmentSchema.shape) as (keyof Environment)[];

export interface MarketoCredentials {
  baseUrl: string;
  clientId: string;
  clientSecret: string;
}

export interface DynamicsCredentials {
  url: string;
  tenantId: string;
  clientId: string;
  clientSecret: string;
  tokenUrl: string;
}

export interface Config {
  env: Environment['NODE_ENV'];
  server: { host: string; port: number; bodyLimitBytes: number; shutdownTimeoutMs: number; syncPersonBudgetMs: number };
  log: { level: Environment['LOG_LEVEL'] };
  database: { url: string | undefined; dataDir: string; poolSize: number };
  /** true when no credentials are set: the service runs against its built-in simulators */
  sandbox: boolean;
  marketo: {
    credentials: MarketoCredentials | undefined;
    callsPer20s: number;
    maxConcurrent: number;
    dailyQuota: number;
    webhookSecret: string | undefined;
    deletedFlagField: string | null;
    /** per-call timeout; undefined: the client's per-endpoint defaults */
    timeoutMs: number | undefined;
  };
  dynamics: {
    credentials: DynamicsCredentials | undefined;
    webhookSecret: string | undefined;
    /** per entity, the condition a record must meet to sync */
    syncFilters: Record<'LEAD' | 'CONTACT', SyncFilterRule>;
    timeoutMs: number | undefined;
    /** MSCRM.SuppressDuplicateDetection on creates (DYNAMICS_SUPPRESS_DUPLICATE_DETECTION) */
    suppressDuplicateDetection: boolean;
    /** what the client spends of the service protection limits per 5-minute window */
    budget: { requestsPerWindow: number; maxConcurrent: number; executionMsPerWindow: number };
  };
  graphql: { apiToken: string | undefined };
  /** PRODUCTION, else real credentials set: no API token is ever generated, no GraphiQL, masked errors */
  production: boolean;
  /** sandbox mode with a shared sandbox (SANDBOX_URL): its descriptor's URL */
  sandboxUrl: string | undefined;
  /** a separate listener for /metrics (no token there); undefined: /metrics on the main port, with a token */
  metricsPort: number | undefined;
  /** Express "trust proxy" (TRUST_PROXY) */
  trustProxy: boolean | number | string;
  security: {
    /** ERASURE_KEY; undefined: the stored key */
    erasureKey: string | undefined;
    loginAttemptsPer15Min: number;
    vendorReadsPerTokenPerMin: number;
  };
  retention: {
    doneEventDays: number;
    /** DEAD change events' payloads are redacted after this many days */
    deadPayloadDays: number;
    activityDays: number;
    syncRunDays: number;
    auditDays: number;
    batchSize: number;
    /** undefined: "off" */
    cron: string | undefined;
  };
  sync: {
    /** undefined: "off", no schedule on this replica */
    sweepCron: string | undefined;
    fullCron: string | undefined;
    sweepQuotaShare: number;
    inboxBatchSize: number;
    intakeQueueLimit: number;
    inboxLeaseSeconds: number;
    inboxMaxAttempts: number;
    inboxPollMs: number;
    recordLockMs: number;
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: { variable: string; message: string }[]) {
    super(
      `Invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  - ${p.variable}: ${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

/** The environment, validated: every problem at once (secrets' values never shown), or a ConfigError. */
function parseEnvironment(source: Record<string, string | undefined>): Environment {
  const parsed = environmentSchema.safeParse(source);
  const problems = [
    ...(parsed.success
      ? []
      : parsed.error.issues.map((issue) => {
          const variable = String(issue.path[0] ?? '(environment)');
          const got = source[variable];
          const shown = got === undefined || /SECRET|TOKEN|PASSWORD|KEY/.test(variable) ? '' : ` (got ${JSON.stringify(got)})`;
          return { variable, message: `${issue.message}${shown}` };
        })),
    ...crossFieldProblems(source),
  ];
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  return parsed.data;
}

/** Marketo and Dynamics credentials, each only when all of its variables are set (neither: sandbox mode). */
function vendorCredentials(env: Environment) {
  const marketo =
    env.MARKETO_BASE_URL && env.MARKETO_CLIENT_ID && env.MARKETO_CLIENT_SECRET
      ? { baseUrl: env.MARKETO_BASE_URL, clientId: env.MARKETO_CLIENT_ID, clientSecret: env.MARKETO_CLIENT_SECRET }
      : undefined;
  const dynamics =
    env.DYNAMICS_URL && env.DYNAMICS_TENANT_ID && env.DYNAMICS_CLIENT_ID && env.DYNAMICS_CLIENT_SECRET
      ? {
          url: env.DYNAMICS_URL,
          tenantId: env.DYNAMICS_TENANT_ID,
          clientId: env.DYNAMICS_CLIENT_ID,
          clientSecret: env.DYNAMICS_CLIENT_SECRET,
          tokenUrl:
            env.DYNAMICS_TOKEN_URL ??
            `https://login.microsoftonline.com/${encodeURIComponent(env.DYNAMICS_TENANT_ID)}/oauth2/v2.0/token`,
        }
      : undefined;
  return { marketo, dynamics };
}

export function loadConfig(source: Record<string, string | undefined> = process.env): Config {
  const env = parseEnvironment(source);
  const { marketo, dynamics } = vendorCredentials(env);
  return {
    env: env.NODE_ENV,
    server: {
      host: env.HOST,
      port: env.PORT,
      bodyLimitBytes: env.HTTP_BODY_LIMIT_KB * 1024,
      shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
      syncPersonBudgetMs: env.SYNC_PERSON_BUDGET_MS,
    },
    log: { level: env.LOG_LEVEL },
    database: { url: env.DATABASE_URL, dataDir: env.DATA_DIR, poolSize: env.DATABASE_POOL_SIZE },
    sandbox: marketo === undefined && dynamics === undefined,
    marketo: {
      credentials: marketo,
      callsPer20s: env.MARKETO_CALLS_PER_20S,
      maxConcurrent: env.MARKETO_MAX_CONCURRENT,
      dailyQuota: env.MARKETO_DAILY_QUOTA,
      webhookSecret: env.MARKETO_WEBHOOK_SECRET,
      deletedFlagField: env.MARKETO_DELETED_FLAG_FIELD.toLowerCase() === 'none' ? null : env.MARKETO_DELETED_FLAG_FIELD,
      timeoutMs: env.MARKETO_TIMEOUT_MS,
    },
    dynamics: {
      credentials: dynamics,
      webhookSecret: env.DYNAMICS_WEBHOOK_SECRET,
      syncFilters: { LEAD: env.SYNC_FILTER_LEAD, CONTACT: env.SYNC_FILTER_CONTACT },
      timeoutMs: env.DYNAMICS_TIMEOUT_MS,
      suppressDuplicateDetection: env.DYNAMICS_SUPPRESS_DUPLICATE_DETECTION === 'true',
      budget: {
        requestsPerWindow: env.DYNAMICS_REQUESTS_PER_5MIN,
        maxConcurrent: env.DYNAMICS_MAX_CONCURRENT,
        executionMsPerWindow: env.DYNAMICS_EXECUTION_MS_PER_5MIN,
      },
    },
    graphql: { apiToken: env.GRAPHQL_API_TOKEN },
    production: env.PRODUCTION === undefined ? marketo !== undefined || dynamics !== undefined : env.PRODUCTION === 'true',
    sandboxUrl: marketo === undefined && dynamics === undefined ? env.SANDBOX_URL : undefined,
    metricsPort: env.METRICS_PORT,
    trustProxy: env.TRUST_PROXY,
    security: {
      erasureKey: env.ERASURE_KEY,
      loginAttemptsPer15Min: env.LOGIN_ATTEMPTS_PER_15MIN,
      vendorReadsPerTokenPerMin: env.VENDOR_READS_PER_TOKEN_PER_MIN,
    },
    retention: {
      doneEventDays: env.RETENTION_DONE_EVENTS_DAYS,
      deadPayloadDays: env.RETENTION_DEAD_PAYLOAD_DAYS,
      activityDays: env.RETENTION_ACTIVITY_DAYS,
      syncRunDays: env.RETENTION_SYNC_RUN_DAYS,
      auditDays: env.RETENTION_AUDIT_DAYS,
      batchSize: env.RETENTION_BATCH_SIZE,
      cron: env.RETENTION_CRON,
    },
    sync: {
      sweepCron: env.SYNC_SWEEP_CRON,
      fullCron: env.SYNC_FULL_CRON,
      sweepQuotaShare: env.SYNC_SWEEP_QUOTA_SHARE,
      inboxBatchSize: env.INBOX_BATCH_SIZE,
      intakeQueueLimit: env.INTAKE_QUEUE_LIMIT,
      inboxLeaseSeconds: env.INBOX_LEASE_SECONDS,
      inboxMaxAttempts: env.INBOX_MAX_ATTEMPTS,
      inboxPollMs: env.INBOX_POLL_MS,
      recordLockMs: env.SYNC_RECORD_LOCK_SECONDS * 1000,
    },
  };
}

/**
 * The configuration of a process that cannot run without it (the service, the CLIs): an invalid
 * setting is told on stderr and ends the process with EX_CONFIG (78), which orchestrators read as
 * "do not restart until the configuration changes".
 */
export function loadConfigOrExit(source: Record<string, string | undefined> = process.env): Config {
  try {
    return loadConfig(source);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(78);
    }
    throw error;
  }
}
