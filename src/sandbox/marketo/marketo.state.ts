// The state one running Marketo simulator holds: credentials and tokens, limits and their windows,
// faults and listeners, counters, the store and the webhook caller. Resources, the gate and the
// admin API all work on this one object.
import { randomUUID } from 'node:crypto';
import { defaultMarketoFields } from './marketo.fields.ts';
import { createMarketoStore, type MarketoStore } from './marketo.store.ts';
import { createWebhookCaller } from './marketo.webhook.ts';
import type {
  MarketoApiCall,
  MarketoEndpoint,
  MarketoFault,
  MarketoFeedOptions,
  MarketoSimulatorCounters,
  MarketoSimulatorLimits,
  MarketoSimulatorOptions,
} from './marketo.types.ts';

export const DAY_MS = 86_400_000;
const CENTRAL_OFFSET_MS = 6 * 3_600_000;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type MarketoSim = ReturnType<typeof createMarketoSim>;

export function createMarketoSim(options: MarketoSimulatorOptions) {
  const now = options.now ?? Date.now;
  const store: MarketoStore = createMarketoStore({ fields: options.fields ?? defaultMarketoFields, now });
  const limits: MarketoSimulatorLimits = { callsPerWindow: 100, windowMs: 20_000, maxConcurrent: 10, dailyQuota: 50_000, ...options.limits };
  const feedOptions: MarketoFeedOptions = { scanBlock: 10_000, emptyPageRate: 0, duplicateRate: 0, ...options.feed };
  return {
    options,
    now,
    clientId: options.clientId ?? `sim-${randomUUID()}`,
    clientSecret: options.clientSecret ?? randomUUID().replaceAll('-', ''),
    apiUser: options.apiUser ?? 'sync-api@marketo-simulator.invalid',
    tokenTtlMs: (options.tokenTtlSeconds ?? 3600) * 1000,
    limits,
    feedOptions,
    omitEmptyResult: options.omitEmptyResult ?? true,
    latencyMs: options.latencyMs ?? 0,
    random: mulberry32(options.seed ?? 0x5eed),
    store,
    webhooks: createWebhookCaller({ store, fetch: options.fetch ?? fetch, timeoutMs: options.webhookTimeoutMs ?? 30_000 }),
    tokens: new Map<string, { expiresAt: number }>(),
    currentToken: undefined as string | undefined,
    faults: [] as MarketoFault[],
    callListeners: [] as ((call: MarketoApiCall) => void)[],
    faultListeners: [] as ((fault: MarketoFault, endpoint: MarketoEndpoint) => void)[],
    /** sliding rate window: admission timestamps from `windowHead` on */
    windowTimes: [] as number[],
    windowHead: 0,
    dailyDay: -1,
    dailyUsed: 0,
    requestSeq: 0,
    counters: { total: 0, counted: 0, identity: 0, inFlight: 0, byEndpoint: {} } as MarketoSimulatorCounters,
    mergeLogsDeleteLead: options.mergeLogsDeleteLead ?? false,
  };
}

/** The daily quota resets at 00:00 US Central. */
export function rollDay(sim: MarketoSim): void {
  const day = Math.floor((sim.now() - CENTRAL_OFFSET_MS) / DAY_MS);
  if (day !== sim.dailyDay) {
    sim.dailyDay = day;
    sim.dailyUsed = 0;
  }
}

export function nextRequestId(sim: MarketoSim): string {
  sim.requestSeq++;
  return `${sim.requestSeq.toString(16)}#${sim.now().toString(16)}`;
}

/** Counts a call's outcome under its endpoint: `code` undefined is success. */
export function count(sim: MarketoSim, endpoint: MarketoEndpoint | 'unknown', code: string | undefined): void {
  const entry = (sim.counters.byEndpoint[endpoint] ??= { calls: 0, ok: 0, errors: {} });
  entry.calls++;
  if (code === undefined) entry.ok++;
  else entry.errors[code] = (entry.errors[code] ?? 0) + 1;
}
