// The simulator's options and the state one running simulator holds: config, tokens, faults,
// service-protection logs, counters, the store and the webhook emitter.
import { randomBytes, randomUUID } from 'node:crypto';
import { DataverseStore } from './dataverse.store.ts';
import type { SimChange, SimRecord } from './dataverse.types.ts';
import { WebhookEmitter } from './webhook.emitter.ts';
import { createDuplicateDetection } from './duplicate-detection.ts';

export type DataverseSimulatorOptions = {
  /** default 0 (random) */
  port?: number;
  host?: string;
  /** the URL clients reach it by, when not http://host:port (a shared sandbox listening on 0.0.0.0) */
  publicUrl?: string;
  tenantId?: string;
  clientId?: string;
  clientSecret?: string;
  /** systemuserid of the application user bound to clientId */
  syncUserId?: string;
  /** systemuserid of the human "UI user" that admin edits run as */
  uiUserId?: string;
  /** access token lifetime; default 3599 s like Entra ID */
  tokenLifetimeSeconds?: number;
  /**
   * service protection limits per user (reference §4.2; defaults: 6000 requests and 1,200,000 ms of
   * execution time per 300 s sliding window, 52 concurrent)
   */
  limits?: { requestsPerWindow?: number; windowMs?: number; maxConcurrent?: number; executionMsPerWindow?: number };
  /**
   * time each request takes (held while it occupies a concurrency slot) and the execution time it is
   * charged; default 0. A `$batch` takes `latencyMs` plus `operationMs` per operation.
   */
  latencyMs?: number;
  /** execution time of one operation inside a `$batch`; default 0 */
  operationMs?: number;
  /** longest request URL accepted (414 above it); default 32768. Inside `$batch` a URL may be up to 65536 */
  maxUrlLength?: number;
  /** organization.expirechangetrackingindays; default 7 */
  changeTrackingRetentionDays?: number;
  webhookTimeoutMs?: number;
  /** pause before the single 502/503/504 retry; default 1000 */
  webhookRetryDelayMs?: number;
  organizationName?: string;
  now?: () => number;
  /** used to deliver webhooks */
  fetch?: typeof fetch;
  /** webhook deliveries in flight at once (the async service's workers); default no limit */
  webhookConcurrency?: number;
};

export type SimFault =
  | { kind: 'rate_limit'; count: number; retryAfterSeconds: number; code?: string }
  | { kind: 'server_error'; count: number; status?: 500 | 502 | 503 | 504 }
  | { kind: 'latency'; count: number; ms: number }
  | { kind: 'network'; count: number }
  /**
   * A write that is applied and whose answer is lost: the connection drops (`network`) or a gateway
   * answers 502/504 after the operation committed (reference §4.2: a message can time out at the
   * front end while the server completes it). Taken only by requests that wrote something, single
   * or `$batch`; a request that wrote nothing passes and leaves the fault for the next one.
   */
  | { kind: 'lost_answer'; count: number; answer: 'network' | 502 | 504; batch: boolean };

export type LostAnswerFault = Extract<SimFault, { kind: 'lost_answer' }>;

export type EndpointCounter = { calls: number; byStatus: Record<string, number> };

export type TokenInfo = { userId: string; expiresAt: number };

export type DataverseSimulatorState = ReturnType<typeof createDataverseSimulatorState>;

/** The simulator's settings: the options given, Dataverse's defaults for the rest. */
function configFrom(options: DataverseSimulatorOptions) {
  return {
    tenantId: options.tenantId ?? randomUUID(),
    clientId: options.clientId ?? randomUUID(),
    clientSecret: options.clientSecret ?? randomBytes(24).toString('base64url'),
    syncUserId: (options.syncUserId ?? randomUUID()).toLowerCase(),
    uiUserId: (options.uiUserId ?? randomUUID()).toLowerCase(),
    organizationId: randomUUID(),
    businessUnitId: randomUUID(),
    tokenLifetimeSeconds: options.tokenLifetimeSeconds ?? 3599,
    limits: {
      requestsPerWindow: options.limits?.requestsPerWindow ?? 6000,
      windowMs: options.limits?.windowMs ?? 300_000,
      maxConcurrent: options.limits?.maxConcurrent ?? 52,
      executionMsPerWindow: options.limits?.executionMsPerWindow ?? 1_200_000,
    },
    timing: { latencyMs: options.latencyMs ?? 0, operationMs: options.operationMs ?? 0 },
    maxUrlLength: options.maxUrlLength ?? 32_768,
    retentionDays: options.changeTrackingRetentionDays ?? 7,
  };
}

export function createDataverseSimulatorState(options: DataverseSimulatorOptions = {}) {
  const now = options.now ?? Date.now;
  const config = configFrom(options);
  const state = {
    config,
    now,
    baseUrl: '',
    tokens: new Map<string, TokenInfo>(),
    faults: [] as SimFault[],
    /** lost answers wait for a write (see SimFault), not for the next request */
    lostAnswers: [] as LostAnswerFault[],
    faultListeners: [] as ((fault: SimFault) => void)[],
    writeListeners: [] as ((change: SimChange) => void)[],
    counters: new Map<string, EndpointCounter>(),
    requestLog: new Map<string, number[]>(),
    /** per user: execution time charged, as [start, ms] in admission order */
    executionLog: new Map<string, { at: number; ms: number }[]>(),
    /** while a change set runs, its notifications wait here: they go out only if it commits */
    deferredChanges: undefined as SimChange[] | undefined,
    inFlight: new Map<string, number>(),
    queryCache: new Map<string, { mutations: number; rows: SimRecord[] }>(),
    store: undefined as unknown as DataverseStore,
    webhooks: undefined as unknown as WebhookEmitter,
    /** in-process listeners told of each stored change when its webhooks are (a bench's arrival clock) */
    changeListeners: [] as ((table: string, id: string) => void)[],
    /** duplicate rules, applied to a create that sends MSCRM.SuppressDuplicateDetection: false */
    duplicates: createDuplicateDetection(),
  };
  state.webhooks = new WebhookEmitter({
    organizationId: config.organizationId,
    businessUnitId: config.businessUnitId,
    organizationName: options.organizationName ?? 'SimOrg',
    organizationHost: () => (state.baseUrl ? new URL(state.baseUrl).host : 'localhost'),
    timeoutMs: options.webhookTimeoutMs ?? 60_000,
    ...(options.webhookConcurrency !== undefined ? { concurrency: options.webhookConcurrency } : {}),
    retryDelayMs: options.webhookRetryDelayMs ?? 1000,
    fetch: options.fetch ?? fetch,
  });
  state.store = new DataverseStore(now, (change: SimChange) => {
    if (state.deferredChanges) state.deferredChanges.push(change);
    else tellChange(state, change);
  });
  const system = { userId: config.uiUserId, fullAccess: true };
  state.store.bulkInsert(
    'systemuser',
    [
      {
        systemuserid: config.syncUserId,
        domainname: `# marketo-sync@${config.tenantId.slice(0, 8)}.onmicrosoft.com`,
        firstname: '#',
        lastname: 'Marketo Sync',
        applicationid: config.clientId,
      },
      { systemuserid: config.uiUserId, domainname: 'dana.reyes@contoso.onmicrosoft.com', firstname: 'Dana', lastname: 'Reyes' },
    ],
    system.userId,
  );
  return state;
}

/** A change is told (webhooks, in-process listeners) once it is stored: at once, or when its change set commits. */
export function tellChange(state: DataverseSimulatorState, change: SimChange): void {
  state.webhooks.notify(change);
  for (const listener of state.changeListeners) listener(change.table.logicalName, change.id);
  for (const listener of state.writeListeners) listener(change);
}
