import { randomBytes } from 'node:crypto';
import type { Config } from '../config.ts';
import { createBudgetCoordinator } from '../connectors/budget/coordinator.ts';
import { dataverseBudgetSpec, marketoBudgetSpec, perCallPools } from '../connectors/budget/vendors.ts';
import { createDataverseClient, type DataverseClient } from '../connectors/dynamics/dataverse.client.ts';
import { createDynamicsPort } from '../connectors/dynamics/dynamics.port.ts';
import { createMarketoClient, type MarketoClient } from '../connectors/marketo/marketo.client.ts';
import { createMarketoPort } from '../connectors/marketo/marketo.port.ts';
import { createMemberStore } from '../db/budget-members.ts';
import type { Database } from '../db/database.ts';
import { fetchUntil } from '../lifecycle.ts';
import type { Logger } from '../logger.ts';
import { startSandbox, type Sandbox } from '../sandbox/sandbox.ts';
import { claimSharedSandboxDatabase, prepareSandboxDatabase } from '../sandbox/seed.ts';
import { fetchSandboxDescriptor, type SandboxDescriptor } from '../sandbox/shared.ts';
import type { ServiceOptions } from './options.ts';
import type { Closers } from './closers.ts';

export interface Vendors {
  marketoClient: MarketoClient;
  dataverseClient: DataverseClient;
  marketo: ReturnType<typeof createMarketoPort>;
  dynamics: ReturnType<typeof createDynamicsPort>;
  webhookSecrets: { marketo: string; dynamics: string };
  /** the in-process simulators, in sandbox mode without SANDBOX_URL */
  sandbox: Sandbox | undefined;
  /** whether the sandbox may seed the database (only asked for when seeding) */
  sandboxDatabase: 'ready' | 'foreign' | undefined;
  /** the deployment's shared sandbox (SANDBOX_URL) */
  shared: SandboxDescriptor | undefined;
  /** calls each vendor's budget holds back on this replica, and those it let go that have not answered */
  vendorQueues: () => Record<'marketo' | 'dynamics', { waiting: number; inFlight: number }>;
}

interface VendorDeps {
  db: Database;
  logger: Logger;
  closers: Closers;
  /** this process, as a member of the vendor budgets */
  owner: string;
  /** aborted half-way through the shutdown budget: vendor calls in flight end then */
  shutdown: AbortSignal;
  options: ServiceOptions;
}

type Simulators = Pick<Vendors, 'sandbox' | 'sandboxDatabase' | 'shared'>;

/** Without credentials: the deployment's shared sandbox (SANDBOX_URL), or simulators started here. */
async function standIns(config: Config, { db, logger, closers, options }: VendorDeps): Promise<Simulators> {
  if (config.sandbox && config.sandboxUrl) {
    // one sandbox for the whole deployment: its simulators, secrets and token
    const shared = await fetchSandboxDescriptor(config.sandboxUrl, { logger });
    if ((await claimSharedSandboxDatabase(db, shared.instance)) === 'foreign') {
      throw new Error('SANDBOX_URL: the database holds data a sandbox did not create; a shared sandbox runs only on an empty or sandbox database');
    }
    logger.warn({ sandbox: config.sandboxUrl }, 'SANDBOX MODE: no Marketo/Dynamics credentials are set; the shared sandbox\'s simulators stand in for both');
    return { sandbox: undefined, sandboxDatabase: undefined, shared };
  }
  if (!config.sandbox) return { sandbox: undefined, sandboxDatabase: undefined, shared: undefined };
  const sandbox = await startSandbox(options.sandbox);
  const sandboxDatabase = options.seed ? await prepareSandboxDatabase(db) : undefined;
  closers.add('sandbox', () => sandbox.close());
  logger.warn(
    { marketo: sandbox.marketo.url, dynamics: sandbox.dataverse.url },
    'SANDBOX MODE: no Marketo/Dynamics credentials are set; the built-in simulators stand in for both',
  );
  return { sandbox, sandboxDatabase, shared: undefined };
}

function credentials(config: Config, { sandbox, shared }: Simulators) {
  const marketo = config.marketo.credentials ?? (shared ? { baseUrl: shared.marketo.url, clientId: shared.marketo.clientId, clientSecret: shared.marketo.clientSecret } : undefined) ?? {
    baseUrl: sandbox!.marketo.url,
    clientId: sandbox!.marketo.clientId,
    clientSecret: sandbox!.marketo.clientSecret,
  };
  const dynamics = config.dynamics.credentials ?? shared?.dynamics ?? {
    url: sandbox!.dataverse.url,
    tokenUrl: sandbox!.dataverse.tokenUrl,
    tenantId: sandbox!.dataverse.tenantId,
    clientId: sandbox!.dataverse.clientId,
    clientSecret: sandbox!.dataverse.clientSecret,
  };
  return { marketo, dynamics };
}

/**
 * The vendor clients and the engine's ports over them, paced by the deployment's shared budgets;
 * in sandbox mode the simulators stand in for both systems.
 */
export async function connectVendors(config: Config, deps: VendorDeps): Promise<Vendors> {
  const { db, logger, closers, owner, options } = deps;
  const simulators = await standIns(config, deps);
  const { sandbox, shared } = simulators;
  const creds = credentials(config, simulators);
  // Marketo's 20 s window (shorter only for the sandbox's tests)
  const marketoWindowMs = sandbox && options.sandbox?.marketoRateWindowMs ? options.sandbox.marketoRateWindowMs : 20_000;
  // The configured shares belong to the whole deployment: every replica is a member of each
  // vendor budget and holds a slice of it, leased in the database and renewed by a heartbeat;
  // on the embedded database the same code runs with one member (docs/budgets.md).
  const budgets = createBudgetCoordinator({
    store: createMemberStore(db),
    member: owner,
    // one process by construction: rows left by an earlier run are dead now, not in a lease
    previousRunsAreGone: db.engine === 'pglite',
    onError: (error) => logger.warn({ err: error }, 'vendor budget heartbeat failed; slices run out with their leases unless it recovers'),
    // a replica whose work stopped with its leases renewed: says whether it lacks budget or a call never ended
    onOverdue: (budget, calls) => logger.warn({ budget: budget.split(':')[0], ...calls }, 'vendor calls held back or in flight for over a minute'),
  });
  const marketoBudget = budgets.join(
    marketoBudgetSpec(`marketo:${new URL(creds.marketo.baseUrl).host}`, {
      callsPerWindow: config.marketo.callsPer20s,
      windowMs: marketoWindowMs,
      maxConcurrent: config.marketo.maxConcurrent,
      dailyQuota: config.marketo.dailyQuota,
    }),
    perCallPools.marketo,
  );
  const dynamicsBudget = budgets.join(
    dataverseBudgetSpec(`dataverse:${new URL(creds.dynamics.url).host}:${creds.dynamics.clientId}`, { ...config.dynamics.budget, windowMs: 300_000 }),
    perCallPools.dataverse,
  );
  await budgets.start();
  closers.add('vendor budgets', () => budgets.stop());
  // In-flight work gets the first half of the shutdown budget to finish; then its vendor calls
  // end and the work goes back to the inbox for the next replica or start.
  const vendorFetch = fetchUntil(deps.shutdown);
  const marketoClient = createMarketoClient({
    ...creds.marketo,
    fetch: options.interceptVendorHttp?.marketo?.(vendorFetch) ?? vendorFetch,
    budget: marketoBudget,
    ...(config.marketo.timeoutMs !== undefined ? { timeoutMs: config.marketo.timeoutMs } : {}),
    logger: logger.child({ component: 'marketo' }),
    limits: {
      callsPer20s: config.marketo.callsPer20s,
      maxConcurrent: config.marketo.maxConcurrent,
      dailyQuota: config.marketo.dailyQuota,
      windowMs: marketoWindowMs,
    },
  });
  closers.add('marketo client', () => marketoClient.close());
  const dataverseClient = createDataverseClient({
    ...creds.dynamics,
    fetch: options.interceptVendorHttp?.dynamics?.(vendorFetch) ?? vendorFetch,
    ...(config.dynamics.timeoutMs !== undefined ? { timeoutMs: config.dynamics.timeoutMs } : {}),
    suppressDuplicateDetection: config.dynamics.suppressDuplicateDetection,
    logger: logger.child({ component: 'dynamics' }),
    budget: config.dynamics.budget,
    sharedBudget: dynamicsBudget,
  });
  closers.add('dynamics client', () => dataverseClient.close());
  // Webhook secrets are required with real systems (config.ts); a sandbox makes up its own.
  const webhookSecrets = {
    marketo: config.marketo.webhookSecret ?? shared?.webhookSecrets.marketo ?? randomBytes(24).toString('base64url'),
    dynamics: config.dynamics.webhookSecret ?? shared?.webhookSecrets.dynamics ?? randomBytes(24).toString('base64url'),
  };
  return {
    ...simulators,
    marketoClient,
    dataverseClient,
    marketo: createMarketoPort(marketoClient),
    dynamics: createDynamicsPort({ client: dataverseClient, syncFilters: config.dynamics.syncFilters }),
    webhookSecrets,
    vendorQueues: () => ({
      marketo: { waiting: marketoBudget.limiter.waiting(), inFlight: marketoBudget.limiter.inFlight() },
      dynamics: { waiting: dynamicsBudget.limiter.waiting(), inFlight: dynamicsBudget.limiter.inFlight() },
    }),
  };
}
