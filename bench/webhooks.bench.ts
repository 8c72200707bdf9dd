// The real-time path under load: the real service takes webhooks at a fixed rate, half Marketo
// person-changed calls after a Marketo edit, half Dataverse webhook steps after a Dynamics edit,
// and we time each change until the other system holds it.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createServiceProcess, freePort } from '../src/chaos/service-process.ts';
import { loadConfig } from '../src/config.ts';
import { openDatabase, type Database } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { startService, type RunningService } from '../src/main.ts';
import { projectPaths } from '../src/paths.ts';
import { startDataverseSimulator, type DataverseSimulator } from '../src/sandbox/dynamics/index.ts';
import { startMarketoSimulator, type StartedMarketoSimulator } from '../src/sandbox/marketo/index.ts';
import { webhookSender } from './webhook-sender.ts';

export interface WebhookBenchResult {
  rate: number;
  changes: number;
  acceptedPerSecond: number;
  p50: number;
  p95: number;
  p99: number;
  lost: number;
  /** p99 of each direction: Marketo edits reaching Dynamics, Dynamics edits reaching Marketo */
  p99MarketoToDynamics: number;
  p99DynamicsToMarketo: number;
  apiCallsPerChange: number;
  marketoCalls: number;
  dynamicsCalls: number;
  p50MarketoToDynamics: number;
  p50DynamicsToMarketo: number;
  /** Dataverse requests answered 429, Marketo calls refused with 606/615 */
  dynamics429: number;
  marketoRefused: number;
  /** from the first change to the last one reaching the other side */
  drainSeconds: number;
  /** Dataverse webhook deliveries the service did not accept (a lost change is then a delivery loss) */
  refusedDeliveries: string[];
  /** Marketo webhook calls the service did not accept (status or network error) */
  failedSends: string[];
  /** Dataverse requests by endpoint during the run: where the requests per change come from */
  dynamicsEndpoints: Record<string, number>;
}

/**
 * The vendors as they really answer (issue 13): Marketo ~300 ms a call, 100 calls / 20 s and 10
 * concurrent; Dataverse ~100 ms a request, 20 ms of execution per operation of a $batch (an
 * assumption: a plain update with few plug-ins), 6,000 requests and 1,200,000 ms of execution per
 * 5 minutes, 52 concurrent. The simulators' defaults are the real limits; the latency is set here.
 */
export const realisticVendors = { marketoLatencyMs: 300, dataverseLatencyMs: 100, dataverseOperationMs: 20 };
export type VendorTiming = typeof realisticVendors;

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : NaN);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function withService<T>(env: Record<string, string>, fn: (service: RunningService) => Promise<T>): Promise<T> {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', DATA_DIR: 'memory://', INBOX_POLL_MS: '50', ...env });
  const service = await startService(config, { logger: pino({ level: 'silent' }) });
  try {
    return await fn(service);
  } finally {
    await service.stop('bench done');
  }
}

type Simulators = { marketo: StartedMarketoSimulator['admin']; dataverse: DataverseSimulator['admin'] };

/**
 * Linked pairs created straight in both simulators and the store, as a finished initial sync leaves
 * them: each lead's owner (a sales user with a name, email, phone and title) is already on its person
 * and in the link's base, so a change carries only what was changed, not the owner fields as well.
 */
export async function seedLinkedLeads(sims: Simulators, db: Database, count: number): Promise<{ marketoId: number; dynamicsId: string }[]> {
  const owner = { firstname: 'Bench', lastname: 'Owner', internalemailaddress: 'bench.owner@example.com', address1_telephone1: '+1 555 0100', title: 'Account Executive' };
  const ownerId = sims.dataverse.addUser({ domainname: 'bench.owner@contoso.onmicrosoft.com', ...owner });
  const ownerFields = { ownerName: `${owner.firstname} ${owner.lastname}`, ownerEmail: owner.internalemailaddress, ownerPhone: owner.address1_telephone1, ownerTitle: owner.title };
  const rows = Array.from({ length: count }, (_, i) => ({ firstName: 'Bench', lastName: `Person ${i}`, email: `bench.${i}@example.com`, title: 'Start' }));
  const marketoIds = sims.marketo.seedLeads(
    rows.map((r) => ({ ...r, dynamicsOwnerName: ownerFields.ownerName, dynamicsOwnerEmail: ownerFields.ownerEmail, dynamicsOwnerPhone: ownerFields.ownerPhone, dynamicsOwnerTitle: ownerFields.ownerTitle })),
  );
  const dynamicsIds = rows.map((_, i) => `00000000-0000-4000-8000-${(i + 1).toString(16).padStart(12, '0')}`);
  sims.dataverse.bulkInsert(
    'lead',
    rows.map((r, i) => ({ leadid: dynamicsIds[i], firstname: r.firstName, lastname: r.lastName, emailaddress1: r.email, jobtitle: r.title, 'ownerid@odata.bind': `/systemusers(${ownerId})` })),
  );
  const snapshot = (i: number) => ({ email: rows[i]!.email, firstName: 'Bench', lastName: `Person ${i}`, title: 'Start', ...ownerFields });
  for (let start = 0; start < count; start += 1000) {
    await db.prisma.syncLink.createMany({
      data: marketoIds.slice(start, start + 1000).map((marketoId, k) => ({
        marketoId,
        dynamicsEntity: 'LEAD' as const,
        dynamicsId: dynamicsIds[start + k]!,
        snapshot: snapshot(start + k),
        lastSyncedAt: new Date(),
      })),
    });
  }
  return marketoIds.map((marketoId, i) => ({ marketoId, dynamicsId: dynamicsIds[i]! }));
}

/** The vendors' counts so far: calls, refusals and 429s, and calls by endpoint (token requests aside). */
export function apiCalls(sims: Simulators) {
  const counters = sims.marketo.counters();
  const marketo = counters.total;
  const marketoRefused = Object.values(counters.byEndpoint).reduce((n, e) => n + (e.errors['606'] ?? 0) + (e.errors['615'] ?? 0), 0);
  const marketoByEndpoint = Object.fromEntries(Object.entries(counters.byEndpoint).map(([endpoint, e]) => [endpoint, e.calls]));
  const endpoints = Object.entries(sims.dataverse.stats()).filter(([endpoint]) => !endpoint.includes('token'));
  const dynamics = endpoints.reduce((sum, [, c]) => sum + c.calls, 0);
  const dynamics429 = endpoints.reduce((sum, [, c]) => sum + (c.byStatus['429'] ?? 0), 0);
  const byEndpoint = Object.fromEntries(endpoints.map(([endpoint, c]) => [endpoint, c.calls]));
  return { marketo, dynamics, marketoRefused, dynamics429, byEndpoint, marketoByEndpoint };
}

/** Calls made between two counts, by endpoint; endpoints not called are left out. */
export function callsSince(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after)
      .map(([endpoint, calls]) => [endpoint, calls - (before[endpoint] ?? 0)] as const)
      .filter(([, calls]) => calls > 0),
  );
}

/** Resolves once the service answers /readyz (token caches and metadata warm, as a running service has them). */
export async function serviceReady(url: string, pollMs = 100): Promise<void> {
  while (!(await fetch(`${url}/readyz`).then((r) => r.ok, () => false))) await sleep(pollMs);
}

/**
 * The service's environment as a production replica has it, pointed at the bench's simulators:
 * default settings but for the database, credentials, webhook secrets and scheduled sweeps (a
 * scheduled sweep would share Marketo's budget with the run; it is measured on its own).
 */
export function serviceEnv(options: {
  marketo: StartedMarketoSimulator;
  dataverse: DataverseSimulator;
  secrets: { marketo: string; dynamics: string };
  databaseUrl?: string;
  dataDir?: string;
}): Record<string, string> {
  const { marketo, dataverse, secrets } = options;
  return {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : { DATA_DIR: options.dataDir ?? './data' }),
    MARKETO_BASE_URL: marketo.url,
    MARKETO_CLIENT_ID: marketo.clientId,
    MARKETO_CLIENT_SECRET: marketo.clientSecret,
    DYNAMICS_URL: dataverse.url,
    DYNAMICS_TOKEN_URL: dataverse.tokenUrl,
    DYNAMICS_TENANT_ID: dataverse.tenantId,
    DYNAMICS_CLIENT_ID: dataverse.clientId,
    DYNAMICS_CLIENT_SECRET: dataverse.clientSecret,
    MARKETO_WEBHOOK_SECRET: secrets.marketo,
    DYNAMICS_WEBHOOK_SECRET: secrets.dynamics,
    GRAPHQL_API_TOKEN: randomBytes(24).toString('base64url'),
    SYNC_SWEEP_CRON: 'off',
    SYNC_FULL_CRON: 'off',
    ...(process.env.MDS_TRACE ? { MDS_TRACE: '1' } : {}),
  };
}

/**
 * The simulators in this process (as remote vendors are), a store holding `pairs` linked leads as a
 * finished initial sync leaves them, and the service in a process of its own on that store, with a
 * Dataverse webhook step pointing at it. `close` stops it all and removes the work folder (kept,
 * with the service's log, under MDS_TRACE).
 */
export async function deployBenchService(options: { vendors: Partial<VendorTiming>; pairs: number; databaseUrl: string | undefined; env: Record<string, string> }) {
  const workDir = await mkdtemp(join(tmpdir(), 'mds-bench-'));
  const [marketo, dataverse] = await Promise.all([
    startMarketoSimulator({ latencyMs: options.vendors.marketoLatencyMs ?? 0 }),
    // deliveries go out 32 at a time, as the Marketo webhooks do: 10,000 at once would spend this
    // machine's cores on the sender's own sockets, a cost the real platform pays on its own servers
    startDataverseSimulator({ latencyMs: options.vendors.dataverseLatencyMs ?? 0, operationMs: options.vendors.dataverseOperationMs ?? 0, webhookConcurrency: 32, fetch: webhookSender }),
  ]);
  const sims = { marketo: marketo.admin, dataverse: dataverse.admin };
  const dataDir = join(workDir, 'data');
  const db = await openDatabase({ url: options.databaseUrl, dataDir });
  let pairs: { marketoId: number; dynamicsId: string }[];
  try {
    await migrate(db, projectPaths());
    pairs = await seedLinkedLeads(sims, db, options.pairs);
  } finally {
    await db.close();
  }
  const secrets = { marketo: randomBytes(24).toString('base64url'), dynamics: randomBytes(24).toString('base64url') };
  const service = createServiceProcess({
    projectRoot: projectPaths().root,
    baseEnv: process.env,
    port: await freePort(),
    logFile: join(workDir, 'service.log'),
    env: { ...serviceEnv({ marketo, dataverse, secrets, ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : { dataDir }) }), ...options.env },
  });
  sims.dataverse.registerWebhook({
    url: `${service.url}/webhooks/dynamics`,
    authType: 'WebhookKey',
    authValue: secrets.dynamics,
    entities: ['lead', 'contact'],
    messages: ['Create', 'Update', 'Delete'],
    postImage: true,
  });
  return {
    sims,
    pairs,
    service,
    secrets,
    dataDir,
    close: async () => {
      await service.stop();
      await Promise.all([marketo.close(), dataverse.close()]);
      if (process.env.MDS_TRACE) console.error(`log: ${join(workDir, 'service.log')}`);
      else await rm(workDir, { recursive: true, force: true });
    },
  };
}

/**
 * The real-time path as production runs it: the service in its own process (the vendors are
 * elsewhere, so their simulators and this driver do not share its event loop), on a database the
 * links were written to beforehand, with default settings except the database and credentials.
 * A warm-up comes first, so the figures are those of a service already at work (JIT, query plans,
 * pools): at the same rate, or for a burst at a steady rate both ways and then a quiet pause.
 */
export async function runWebhookBench(options: {
  rate: number;
  changes: number;
  /** changes sent first at the same rate and not counted: JIT, query plans, pools, Marketo's idle bucket */
  warmupChanges?: number;
  databaseUrl?: string;
  env?: Record<string, string>;
  /** call times of the simulators; default none (the limits are the real ones either way) */
  vendors?: VendorTiming;
  /** all changes at once in one direction instead of a steady rate */
  burst?: 'marketo' | 'dynamics';
  /** a burst's warm-up goes at this rate, both ways (a service at work), default 100/s */
  warmupRate?: number;
  /** quiet time between the warm-up and the counted changes (a burst: until Marketo's idle bucket is full again) */
  pauseAfterWarmupMs?: number;
}): Promise<WebhookBenchResult> {
  const warmup = options.warmupChanges ?? 0;
  const { sims, pairs, service, secrets, close } = await deployBenchService({
    vendors: options.vendors ?? {},
    pairs: warmup + options.changes,
    databaseUrl: options.databaseUrl,
    env: options.env ?? {},
  });
  try {
    await service.start();
    await serviceReady(service.url);
    if (warmup > 0) {
      const warmupRate = options.burst ? (options.warmupRate ?? 100) : options.rate;
      await drive({ rate: warmupRate, changes: warmup }, service.url, secrets.marketo, sims, pairs.slice(0, warmup));
      await sleep(options.pauseAfterWarmupMs ?? 0);
    }
    return await drive(options, service.url, secrets.marketo, sims, pairs.slice(warmup));
  } finally {
    await close();
  }
}

async function drive(
  options: { rate: number; changes: number; burst?: 'marketo' | 'dynamics' },
  url: string,
  marketoSecret: string,
  sims: Simulators,
  pairs: { marketoId: number; dynamicsId: string }[],
): Promise<WebhookBenchResult> {
  const before = apiCalls(sims);
  // what each change waits for, by the record that must come to hold it
  const toDynamics = new Map<string, { value: string; t0: number }>();
  const toMarketo = new Map<number, { value: string; t0: number }>();
  const latencies: number[] = [];
  const byDirection: [number[], number[]] = [[], []];
  let accepted = 0;
  const failedSends: string[] = [];
  const sends: Promise<void>[] = [];
  const started = performance.now();

  let sendEnd = Infinity;
  let lastArrival = started;
  const arrived = (t0: number, direction: 0 | 1) => {
    const now = performance.now();
    latencies.push(now - t0);
    byDirection[direction].push(now - t0);
    lastArrival = now;
  };
  // Arrivals are timed when the simulators store the write (their change listeners), not by polling:
  // polling 10,000 records every few milliseconds took a core from the service on a 2-core machine.
  sims.dataverse.onRecordChanged((table, id) => {
    const p = table === 'lead' ? toDynamics.get(id) : undefined;
    if (p && sims.dataverse.get('lead', id)?.jobtitle === p.value) {
      toDynamics.delete(id);
      arrived(p.t0, 0);
    }
  });
  sims.marketo.onLeadUpdated((id) => {
    const p = toMarketo.get(id);
    if (p && sims.marketo.getLead(id)?.title === p.value) {
      toMarketo.delete(id);
      arrived(p.t0, 1);
    }
  });
  const pendingCount = () => toDynamics.size + toMarketo.size;

  // a burst: every change at once, in one direction (the webhook calls themselves a few dozen at a time)
  const burst = options.burst;
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < options.changes; i++) {
    if (burst === undefined) {
      const due = started + (i * 1000) / options.rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
    } else if (inFlight.size >= 32) await Promise.race(inFlight);
    const pair = pairs[i]!;
    const t0 = burst === undefined ? performance.now() : started;
    if (burst === 'marketo' || (burst === undefined && i % 2 === 0)) {
      const value = `M-${i}`;
      toDynamics.set(pair.dynamicsId, { value, t0 });
      sims.marketo.updateLead(pair.marketoId, { title: value });
      const send = webhookSender(`${url}/webhooks/marketo/person-changed`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-webhook-secret': marketoSecret },
        body: JSON.stringify({ marketoId: pair.marketoId }),
      }).then(
        async (res) => {
          await res.arrayBuffer();
          if (res.ok) accepted++;
          else failedSends.push(String(res.status));
        },
        // a connection the service closed: Marketo does not retry a webhook, so the change waits for the sweep (shown as lost here)
        (error: unknown) => {
          failedSends.push(error instanceof Error ? String((error.cause as { code?: string } | undefined)?.code ?? error.message) : String(error));
        },
      );
      sends.push(send);
      inFlight.add(send);
      void send.finally(() => inFlight.delete(send));
    } else {
      const value = `D-${i}`;
      toMarketo.set(pair.marketoId, { value, t0 });
      sims.dataverse.update('lead', pair.dynamicsId, { jobtitle: value });
      accepted++; // Dataverse delivers its webhook itself; a refused delivery shows up as lost
    }
  }
  await Promise.all(sends);
  sendEnd = performance.now();
  const acceptedPerSecond = accepted / ((sendEnd - started) / 1000);
  // a burst may take minutes to drain at the vendors' limits; a steady run has 30 s to finish
  const patience = options.burst ? 120_000 : 30_000;
  while (pendingCount() > 0 && performance.now() - Math.max(sendEnd, lastArrival) < patience) await sleep(50);
  const after = apiCalls(sims);
  const sorted = [...latencies].sort((a, b) => a - b);
  const marketoCalls = after.marketo - before.marketo;
  const dynamicsCalls = after.dynamics - before.dynamics;
  return {
    rate: options.rate,
    changes: options.changes,
    acceptedPerSecond,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    lost: pendingCount(),
    p99MarketoToDynamics: percentile(byDirection[0].sort((a, b) => a - b), 99),
    p99DynamicsToMarketo: percentile(byDirection[1].sort((a, b) => a - b), 99),
    p50MarketoToDynamics: percentile(byDirection[0], 50),
    p50DynamicsToMarketo: percentile(byDirection[1], 50),
    dynamics429: after.dynamics429 - before.dynamics429,
    marketoRefused: after.marketoRefused - before.marketoRefused,
    drainSeconds: (lastArrival - started) / 1000,
    dynamicsEndpoints: callsSince(before.byEndpoint, after.byEndpoint),
    failedSends,
    refusedDeliveries: sims.dataverse
      .webhookDeliveries()
      .filter((d) => d.status === null || d.status >= 300)
      .map((d) => `${d.status ?? d.error ?? 'no answer'}`),
    apiCallsPerChange: (marketoCalls + dynamicsCalls) / options.changes,
    marketoCalls,
    dynamicsCalls,
  };
}
