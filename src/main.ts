import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { pathToFileURL } from 'node:url';
import { bearerSecret, createApiTokens, ensureStartupToken, NoApiTokenError, type ApiTokenService, type StartupToken } from './auth/tokens.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createDataverseClient } from './connectors/dynamics/dataverse.client.ts';
import { createDynamicsPort } from './connectors/dynamics/dynamics.port.ts';
import { createMarketoClient } from './connectors/marketo/marketo.client.ts';
import { createBudgetCoordinator } from './connectors/budget/coordinator.ts';
import { dataverseBudgetSpec, marketoBudgetSpec, perCallPools } from './connectors/budget/vendors.ts';
import { createMemberStore } from './db/budget-members.ts';
import { createMarketoPort } from './connectors/marketo/marketo.port.ts';
import { openDatabase, type Database } from './db/database.ts';
import { createEmbeddedUpkeep } from './db/embedded-upkeep.ts';
import { migrate } from './db/migrate.ts';
import { consoleBanner } from './console/banner.ts';
import { createConsole } from './console/console.routes.ts';
import { createLiveReads } from './console/live.ts';
import { createConsoleSessions } from './console/session.ts';
import { createRateLimiter } from './security/rate-limit.ts';
import { createSuppressions, erasureKey } from './security/suppression.ts';
import { createGraphQLHandler } from './graphql/handler.ts';
import { createApp, createMetricsApp } from './http/app.ts';
import { createHealth, type ConnectorProbe } from './http/health.ts';
import { createLogger, type Logger } from './logger.ts';
import { createMetrics } from './observability/metrics.ts';
import { projectPaths } from './paths.ts';
import { createRetentionService, type RetentionService } from './retention/index.ts';
import { startSandbox, type Sandbox, type SandboxOptions } from './sandbox/sandbox.ts';
import { claimSharedSandboxDatabase, prepareSandboxDatabase, seedSandbox, type SandboxSeed } from './sandbox/seed.ts';
import { fetchSandboxDescriptor, type SandboxDescriptor } from './sandbox/shared.ts';
import { createSweepService, type SweepService } from './sweep/index.ts';
import { openIntents } from './sync/create-intents.ts';
import { createSyncEngine } from './sync/engine.ts';
import { createMappingService } from './sync/mappings.ts';
import { createOperatorActions } from './sync/operator.ts';
import { createSyncPerson } from './sync/sync-person.ts';
import { createSyncWorker, type SyncWorker } from './sync/worker.ts';
import { createFanout } from './sync/fanout.ts';
import { createMergeHandler } from './sync/merged-records.ts';
import { createBatchSyncRunner, type BatchSyncRunner } from './sync/batch-sync-person.ts';
import { createFencing } from './sync/fence.ts';
import { createLeaseKeeper } from './sync/leases.ts';
import { fetchUntil } from './lifecycle.ts';
import { createInboxIntake } from './inbox/intake.ts';
import { recordDynamicsEcho } from './sync/journal.ts';
import { createDynamicsWebhooks } from './webhooks/dynamics.ts';
import { createMarketoWebhooks } from './webhooks/marketo.ts';

// The composition root: config -> logger -> database (+ migrations) -> connectors (real, or the
// sandbox simulators) -> engine + inbox worker -> HTTP. Everything else receives what it needs
// from here; nothing reaches for globals.

export interface RunningService {
  url: string;
  db: Database;
  logger: Logger;
  worker: SyncWorker;
  /** the reconciliation sweep: scheduler, lease and `requestSweep()` */
  sweeper: SweepService;
  /** Batch Sync Person: queues lists (`start`) and works through them in the background */
  batchSyncs: BatchSyncRunner;
  /** the in-process simulators, in sandbox mode */
  sandbox: Sandbox | undefined;
  /** the demo data `seed: true` put into the simulators */
  seed: SandboxSeed | undefined;
  webhookSecrets: { marketo: string; dynamics: string };
  /** an operate secret for /graphql: GRAPHQL_API_TOKEN, or the one sandbox mode made at this start;
   * undefined when only CLI-made tokens exist (their secrets are not stored) */
  graphqlToken: string | undefined;
  /** true when graphqlToken was made at this start (sandbox mode): main() prints it once */
  graphqlTokenGenerated: boolean;
  /** the API tokens (hashes only) */
  tokens: ApiTokenService;
  /** pruning of old rows on the leader (schedule and `pruneNow()`) */
  retention: RetentionService;
  /** reads both systems' field metadata again (column security or fields changed) */
  refreshMetadata(): void;
  /** GET /metrics on its own listener (METRICS_PORT); undefined: on `url`, with a token */
  metricsUrl: string | undefined;
  /** stop intake, finish in-flight work, close the database; idempotent */
  stop(reason?: string): Promise<void>;
}

/** What the console, the API and the log say while no API token exists. */
export const FIRST_TOKEN_HINT =
  'create the first with `docker compose run --rm app token create --scope admin --name <who>` ' +
  '(outside Docker: `npm run token -- create --scope admin --name <who>`, same DATABASE_URL), or set GRAPHQL_API_TOKEN';

/** The hint while no token can authenticate; asks the database until one exists, then never again. */
function createFirstTokenHint(tokens: ApiTokenService): () => Promise<string | undefined> {
  let seen = false;
  return async () => {
    if (seen) return undefined;
    seen = (await tokens.activeCount()) > 0;
    return seen ? undefined : `No API token exists yet: ${FIRST_TOKEN_HINT}.`;
  };
}

/** A check that costs nothing most of the time: the clients cache describe/WhoAmI results. */
function probe(name: string, mode: 'live' | 'sandbox', check: () => Promise<unknown>): ConnectorProbe {
  return {
    name,
    async check() {
      try {
        await check();
        return { ok: true, mode };
      } catch (error) {
        return { ok: false, mode, detail: error instanceof Error ? error.message : String(error) };
      }
    },
  };
}

export interface ServiceOptions {
  logger?: Logger;
  /** simulator settings in sandbox mode (tests, benchmarks) */
  sandbox?: SandboxOptions;
  /** sandbox mode only: seed both simulators with demo data (npm start, npm run demo) */
  seed?: boolean;
  /**
   * Wraps the vendor clients' HTTP (tests): races and faults at the HTTP boundary, such as an
   * automation editing a person right after the sync created it, or a plug-in rewriting a value.
   */
  interceptVendorHttp?: { marketo?: (next: typeof fetch) => typeof fetch; dynamics?: (next: typeof fetch) => typeof fetch };
  /** the clock of Marketo webhooks' coalescing window (tests: a repeat must not straddle its edge); default Date.now */
  webhookClock?: () => number;
  /** an in-memory embedded database starts from this dump (tests: an already migrated one) */
  embeddedStartFrom?: Blob;
  /** Batch Sync Person's list page (tests: several pages of a short list); default Marketo's 300 */
  batchSyncPageSize?: number;
}

export async function startService(config: Config, options: ServiceOptions = {}): Promise<RunningService> {
  const logger = options.logger ?? createLogger({ level: config.log.level });
  const paths = projectPaths();
  const closers: { name: string; close: () => Promise<void> }[] = [];
  const closeAll = async () => {
    for (const closer of closers.reverse()) {
      try {
        await closer.close();
      } catch (error) {
        logger.error({ err: error, component: closer.name }, 'error while closing');
      }
    }
  };

  try {
    const db = await openDatabase({ url: config.database.url, dataDir: config.database.dataDir, poolSize: config.database.poolSize, startFrom: options.embeddedStartFrom });
    closers.push({ name: 'database', close: () => db.close() });
    logger.info(
      { engine: db.engine, ...(db.engine === 'pglite' ? { dataDir: config.database.dataDir } : {}) },
      db.engine === 'pglite' ? 'using the embedded database (PGlite)' : 'using PostgreSQL',
    );
    const { applied } = await migrate(db, paths);
    logger.info({ applied }, applied.length ? `applied ${applied.length} migration(s)` : 'database schema is current');
    // the erasure list: everything that could link or log a person asks it (security/suppression.ts)
    const suppressions = createSuppressions(db.prisma, await erasureKey(db.prisma, config.security.erasureKey));

    let sandbox: Sandbox | undefined;
    let sandboxDatabase: 'ready' | 'foreign' | undefined;
    // one sandbox for the whole deployment (SANDBOX_URL): its simulators, secrets and token
    let shared: SandboxDescriptor | undefined;
    if (config.sandbox && config.sandboxUrl) {
      shared = await fetchSandboxDescriptor(config.sandboxUrl, { logger });
      if ((await claimSharedSandboxDatabase(db, shared.instance)) === 'foreign') {
        throw new Error('SANDBOX_URL: the database holds data a sandbox did not create; a shared sandbox runs only on an empty or sandbox database');
      }
      logger.warn({ sandbox: config.sandboxUrl }, 'SANDBOX MODE: no Marketo/Dynamics credentials are set; the shared sandbox\'s simulators stand in for both');
    } else if (config.sandbox) {
      sandbox = await startSandbox(options.sandbox);
      sandboxDatabase = options.seed ? await prepareSandboxDatabase(db) : undefined;
      closers.push({ name: 'sandbox', close: () => sandbox!.close() });
      logger.warn(
        { marketo: sandbox.marketo.url, dynamics: sandbox.dataverse.url },
        'SANDBOX MODE: no Marketo/Dynamics credentials are set; the built-in simulators stand in for both',
      );
    }
    const marketoCredentials = config.marketo.credentials ?? (shared ? { baseUrl: shared.marketo.url, clientId: shared.marketo.clientId, clientSecret: shared.marketo.clientSecret } : undefined) ?? {
      baseUrl: sandbox!.marketo.url,
      clientId: sandbox!.marketo.clientId,
      clientSecret: sandbox!.marketo.clientSecret,
    };
    const dynamicsCredentials = config.dynamics.credentials ?? shared?.dynamics ?? {
      url: sandbox!.dataverse.url,
      tokenUrl: sandbox!.dataverse.tokenUrl,
      tenantId: sandbox!.dataverse.tenantId,
      clientId: sandbox!.dataverse.clientId,
      clientSecret: sandbox!.dataverse.clientSecret,
    };
    // Marketo's 20 s window (shorter only for the sandbox's tests)
    const marketoWindowMs = sandbox && options.sandbox?.marketoRateWindowMs ? options.sandbox.marketoRateWindowMs : 20_000;
    // The configured shares belong to the whole deployment: every replica is a member of each
    // vendor budget and holds a slice of it, leased in the database and renewed by a heartbeat;
    // on the embedded database the same code runs with one member (docs/budgets.md).
    const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    const budgets = createBudgetCoordinator({
      store: createMemberStore(db),
      member: owner,
      // one process by construction: rows left by an earlier run are dead now, not in a lease
      previousRunsAreGone: db.engine === 'pglite',
      onError: (error) => logger.warn({ err: error }, 'vendor budget heartbeat failed; slices run out with their leases unless it recovers'),
    });
    const marketoBudget = budgets.join(
      marketoBudgetSpec(`marketo:${new URL(marketoCredentials.baseUrl).host}`, {
        callsPerWindow: config.marketo.callsPer20s,
        windowMs: marketoWindowMs,
        maxConcurrent: config.marketo.maxConcurrent,
        dailyQuota: config.marketo.dailyQuota,
      }),
      perCallPools.marketo,
    );
    const dynamicsBudget = budgets.join(
      dataverseBudgetSpec(`dataverse:${new URL(dynamicsCredentials.url).host}:${dynamicsCredentials.clientId}`, { ...config.dynamics.budget, windowMs: 300_000 }),
      perCallPools.dataverse,
    );
    await budgets.start();
    closers.push({ name: 'vendor budgets', close: () => budgets.stop() });
    // Aborted half-way through the shutdown budget: in-flight work gets the first half to finish,
    // then its vendor calls end and the work goes back to the inbox for the next replica or start.
    const shutdown = new AbortController();
    const vendorFetch = fetchUntil(shutdown.signal);
    const marketoClient = createMarketoClient({
      ...marketoCredentials,
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
    closers.push({ name: 'marketo client', close: () => marketoClient.close() });
    const dataverseClient = createDataverseClient({
      ...dynamicsCredentials,
      fetch: options.interceptVendorHttp?.dynamics?.(vendorFetch) ?? vendorFetch,
      ...(config.dynamics.timeoutMs !== undefined ? { timeoutMs: config.dynamics.timeoutMs } : {}),
      suppressDuplicateDetection: config.dynamics.suppressDuplicateDetection,
      logger: logger.child({ component: 'dynamics' }),
      budget: config.dynamics.budget,
      sharedBudget: dynamicsBudget,
    });
    closers.push({ name: 'dynamics client', close: () => dataverseClient.close() });
    const marketo = createMarketoPort(marketoClient);
    const dynamics = createDynamicsPort({ client: dataverseClient, syncFilters: config.dynamics.syncFilters });

    // Webhook secrets are required with real systems (config.ts); a sandbox makes up its own.
    const webhookSecrets = {
      marketo: config.marketo.webhookSecret ?? shared?.webhookSecrets.marketo ?? randomBytes(24).toString('base64url'),
      dynamics: config.dynamics.webhookSecret ?? shared?.webhookSecrets.dynamics ?? randomBytes(24).toString('base64url'),
    };

    const mappings = createMappingService({ db: db.prisma, marketo, dynamics });
    // every vendor write is fenced on the record leases of the work that sends it (sync/fence.ts)
    const fencing = createFencing({ db, leaseMs: config.sync.recordLockMs, shutdown: shutdown.signal, logger: logger.child({ component: 'fence' }) });
    const engine = createSyncEngine({
      db,
      fencing,
      marketo,
      dynamics,
      mappings,
      logger: logger.child({ component: 'engine' }),
      owner,
      lockLeaseMs: config.sync.recordLockMs,
      deletedFlagField: config.marketo.deletedFlagField,
      signal: shutdown.signal,
      suppressions,
    });
    const syncPerson = createSyncPerson({ db, marketo, dynamics, mappings, owner, leaseMs: config.sync.recordLockMs, fencing, suppressions });
    const batchSyncs = createBatchSyncRunner({
      db,
      marketo,
      mappings,
      syncPerson,
      owner,
      logger: logger.child({ component: 'batch-sync-person' }),
      ...(options.batchSyncPageSize ? { pageSize: options.batchSyncPageSize } : {}),
    });
    // bounded: past the limit Dataverse deliveries are refused with 503 and Sync Person queues
    const intake = createInboxIntake(db, { limit: config.sync.intakeQueueLimit });
    const metrics = createMetrics({ db, marketoStats: () => marketoClient.stats(), dataverseStats: () => dataverseClient.stats(), intakeStats: () => intake.stats() });
    // told only by the worker's own batches: the worker exists by then
    const fanout = createFanout({ db, dynamics, mappings, notify: () => worker.notify() });
    const merges = createMergeHandler({ db, owner, leaseMs: config.sync.recordLockMs, notify: () => worker.notify() });
    const worker = createSyncWorker({
      db,
      engine,
      syncPerson,
      fanout,
      merges,
      logger: logger.child({ component: 'worker' }),
      owner,
      batchSize: config.sync.inboxBatchSize,
      leaseMs: config.sync.inboxLeaseSeconds * 1000,
      maxAttempts: config.sync.inboxMaxAttempts,
      pollMs: config.sync.inboxPollMs,
      signal: shutdown.signal,
      onOutcome: (status) => metrics.recordOutcome(status),
    });
    const leases = createLeaseKeeper({
      db,
      owner,
      heldEvents: () => worker.heldEvents(),
      eventLeaseMs: config.sync.inboxLeaseSeconds * 1000,
      recordLeaseMs: config.sync.recordLockMs,
      fencing,
      logger: logger.child({ component: 'leases' }),
    });
    await leases.reclaimOnStart();
    leases.start();
    closers.push({ name: 'lease heartbeat', close: () => leases.stop() });
    const sweeper = createSweepService({
      config,
      db,
      marketoClient,
      dataverseClient,
      mappings,
      syncUserId: () => engine.syncUserId(),
      logger,
      owner,
      notify: () => worker.notify(),
      marketoApiUser: () => marketoClient.apiUser(),
      suppressions,
    });
    // The Dataverse intake ignores the sync user's own writes once it knows who that is; until
    // then (Dynamics unreachable at start-up) each webhook asks again, and the merge catches echoes.
    let syncUserId: string | undefined;
    let learning = false;
    const knownSyncUser = () => {
      if (syncUserId === undefined && !learning) {
        learning = true;
        engine.syncUserId().then(
          (id) => (syncUserId = id),
          (error: unknown) => logger.warn({ err: error }, 'could not learn the Dynamics sync user yet; echoes are caught by the merge'),
        ).finally(() => (learning = false));
      }
      return syncUserId;
    };
    knownSyncUser();

    let draining = false;
    const mode = config.sandbox ? 'sandbox' : 'live';
    const probes = [
      probe('marketo', mode, () => marketoClient.describeLeadFields()),
      probe('dynamics', mode, () => dataverseClient.whoAmI()),
    ];
    const health = createHealth({ db, migrationsDir: paths.migrationsDir, sandbox: config.sandbox, probes, draining: () => draining });

    const operator = createOperatorActions({ db, marketo, dynamics, mappings, owner, notify: () => worker.notify(), fencing });
    // production never makes or logs a token; without one it stays up (webhooks are taken) and
    // the console, the API and this log line say how to create the first
    let startupToken: StartupToken | undefined;
    try {
      startupToken = await ensureStartupToken(db.prisma, { configured: config.graphql.apiToken ?? shared?.apiToken, production: config.production });
    } catch (error) {
      if (!(error instanceof NoApiTokenError)) throw error;
      logger.warn(`no API token yet: ${FIRST_TOKEN_HINT}`);
    }
    const graphqlToken = startupToken?.kind === 'configured' || startupToken?.kind === 'generated' ? startupToken.secret : undefined;
    if (startupToken?.kind === 'generated') logger.info('sandbox: an API token (admin scope) was made for this start; it is printed once, never logged');
    if (startupToken !== undefined && startupToken.kind !== 'configured' && startupToken.configuredRevoked) logger.warn('GRAPHQL_API_TOKEN was revoked and stays revoked: set a new value to use it again');
    const tokens = createApiTokens(db.prisma);
    const firstTokenHint = createFirstTokenHint(tokens);
    const retention = createRetentionService({
      db,
      policy: config.retention,
      cron: config.retention.cron,
      owner,
      logger: logger.child({ component: 'retention' }),
      onPruned: (result) => metrics.recordPrune(result),
    });
    // the console's sessions are stored (as hashes) and name a token of this set; revoking the token ends them
    const sessions = createConsoleSessions({ prisma: db.prisma, tokens });
    const loginLimiter = createRateLimiter(db.prisma, { limit: config.security.loginAttemptsPer15Min, windowMs: 15 * 60_000 });
    const graphql = createGraphQLHandler({
      sessions,
      live: createLiveReads({ marketo, dynamics, mappings }),
      prisma: db.prisma,
      logger: logger.child({ component: 'graphql' }),
      tokens,
      graphiql: !config.production,
      production: config.production,
      firstTokenHint,
      erasure: { suppressions, owner, leaseMs: config.sync.recordLockMs },
      vendorReads: createRateLimiter(db.prisma, { limit: config.security.vendorReadsPerTokenPerMin, windowMs: 60_000 }),
      bodyLimitBytes: config.server.bodyLimitBytes,
      actions: {
        requestPersonSync: operator.requestPersonSync,
        resolveCollision: operator.resolveCollision,
        validateFieldMapping: operator.validateFieldMapping,
        requestSweep: () => sweeper.requestSweepAction(),
        async scheduleBackfill(entity, canonicalField) {
          await db.prisma.fieldMapping.update({
            where: { entity_canonicalField: { entity, canonicalField } },
            data: { backfillRequestedAt: new Date() },
          });
          mappings.invalidate(entity);
        },
        fieldMappingChanged: (entity) => mappings.invalidate(entity),
        startBatchSyncPerson: async (request) => ({ batchId: (await batchSyncs.start(request)).id }),
        cancelBatchSyncPerson: async (batchId) => (await batchSyncs.cancel(batchId)) !== null,
      },
      intakeStats: () => intake.stats(),
      async connectorHealth() {
        return Object.fromEntries(await Promise.all(probes.map(async (p) => [p.name, await p.check()] as const)));
      },
      apiUsage: () =>
        Promise.resolve({
          marketo: { callsToday: marketoClient.stats().dailyCalls, dailyQuota: config.marketo.dailyQuota },
          dynamics: { calls: dataverseClient.stats().totalCalls },
        }),
    });
    const app = createApp({
      metrics: { ...metrics, separateListener: config.metricsPort !== undefined },
      authorizeOps: async (authorization) => (await tokens.authenticate(bearerSecret(authorization))) !== null,
      console: createConsole({ sessions, sandbox: config.sandbox, firstTokenHint, loginLimiter }),
      trustProxy: config.trustProxy,
      logger,
      health,
      bodyLimitBytes: config.server.bodyLimitBytes,
      draining: () => draining,
      graphql: graphql.middleware,
      webhooks: {
        marketo: createMarketoWebhooks({
          inbox: intake,
          secret: webhookSecrets.marketo,
          syncPerson,
          logger,
          notify: () => worker.notify(),
          syncPersonBudgetMs: config.server.syncPersonBudgetMs,
          bodyLimitBytes: config.server.bodyLimitBytes,
          erased: (id) => suppressions.suppressed({ marketoIds: [id] }),
          ...(options.webhookClock ? { now: options.webhookClock } : {}),
        }),
        dynamics: createDynamicsWebhooks({
          inbox: intake,
          secret: webhookSecrets.dynamics,
          syncUserId: knownSyncUser,
          unfinishedCreate: async (id) => (await openIntents(db.prisma, { dynamicsIds: [id] })).length > 0,
          notify: () => worker.notify(),
          bodyLimitBytes: config.server.bodyLimitBytes,
          erased: (id) => suppressions.suppressed({ dynamicsIds: [id] }),
          echoed: (id, echo) => recordDynamicsEcho(db, id, echo),
        }),
      },
    });

    const server: Server = app.listen(config.server.port, config.server.host);
    await once(server, 'listening');
    const address = server.address() as AddressInfo;
    const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
    const url = `http://${host}:${address.port}`;
    logger.info({ url }, 'listening');
    let metricsUrl: string | undefined;
    if (config.metricsPort !== undefined) {
      const metricsServer = createMetricsApp(metrics.handler, logger).listen(config.metricsPort, config.server.host);
      await once(metricsServer, 'listening');
      metricsUrl = `http://${host}:${(metricsServer.address() as AddressInfo).port}/metrics`;
      closers.push({ name: 'metrics listener', close: () => new Promise<void>((resolve) => {
        metricsServer.close(() => resolve());
        metricsServer.closeAllConnections();
      }) });
      logger.info({ url: metricsUrl }, 'metrics listening (METRICS_PORT)');
    }
    worker.start();
    closers.push({ name: 'inbox worker', close: () => worker.stop() });
    closers.push({ name: 'sync person calls', close: () => syncPerson.idle() });
    batchSyncs.begin();
    // closed before Sync Person's calls are waited for (closers run last first): no new page starts
    closers.push({ name: 'batch sync person', close: () => batchSyncs.stop() });
    sweeper.start();
    closers.push({ name: 'sweep scheduler', close: () => sweeper.stop() });
    retention.start();
    closers.push({ name: 'retention', close: () => retention.stop() });
    // PGlite has no autovacuum (single-user PostgreSQL); on PostgreSQL this does nothing
    const upkeep = createEmbeddedUpkeep({ db, logger: logger.child({ component: 'embedded-upkeep' }) });
    upkeep.start();
    closers.push({ name: 'embedded database upkeep', close: () => upkeep.stop() });
    if (sandbox) {
      // As an admin would with the Plugin Registration Tool: a webhook step on lead and contact.
      sandbox.dataverse.admin.registerWebhook({
        url: `${url}/webhooks/dynamics`,
        authType: 'WebhookKey',
        authValue: webhookSecrets.dynamics,
        entities: ['lead', 'contact'],
        messages: ['Create', 'Update', 'Delete', 'Merge'],
        postImage: true,
      });
      // ...and an Update step on account and systemuser: company and owner fields follow their edits
      sandbox.dataverse.admin.registerWebhook({
        url: `${url}/webhooks/dynamics`,
        authType: 'WebhookKey',
        authValue: webhookSecrets.dynamics,
        entities: ['account', 'systemuser'],
        messages: ['Update'],
        postImage: false,
      });
      logger.warn({ marketoWebhookSecret: webhookSecrets.marketo }, 'sandbox webhook secret for X-Webhook-Secret (generated for this run)');
    }
    let seed: SandboxSeed | undefined;
    if (sandbox && sandboxDatabase === 'ready') seed = await seedSandbox({ sandbox, db, logger });
    if (sandboxDatabase === 'foreign') logger.warn('sandbox: the database holds data this sandbox did not create; not seeding it (use an empty DATA_DIR)');

    let stopping: Promise<void> | undefined;
    const stop = (reason = 'stop requested') => {
      stopping ??= (async () => {
        logger.info({ reason }, 'shutting down: intake stopped, finishing in-flight work');
        draining = true;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const abortVendorCalls = setTimeout(() => shutdown.abort(new Error('the service is shutting down')), config.server.shutdownTimeoutMs / 2);
        abortVendorCalls.unref();
        const timeout = new Promise<'timeout'>((resolve) => setTimeout(resolve, config.server.shutdownTimeoutMs, 'timeout').unref());
        if ((await Promise.race([closed, timeout])) === 'timeout') {
          logger.warn({ timeoutMs: config.server.shutdownTimeoutMs }, 'in-flight requests did not finish in time; closing them');
          server.closeAllConnections();
        }
        await closeAll();
        clearTimeout(abortVendorCalls);
        logger.info('stopped');
      })();
      return stopping;
    };
    return {
      url,
      db,
      logger,
      worker,
      sweeper,
      batchSyncs,
      sandbox,
      seed,
      webhookSecrets,
      graphqlToken,
      graphqlTokenGenerated: startupToken?.kind === 'generated',
      tokens,
      retention,
      refreshMetadata: () => mappings.invalidate(),
      metricsUrl,
      stop,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
  const logger = createLogger({ level: config.log.level });
  const service = await startService(config, { logger, seed: true });
  if (service.graphqlTokenGenerated && !(service.sandbox && service.seed)) {
    process.stdout.write(`Sandbox API token (admin scope, made at this start, shown once): ${service.graphqlToken}\n`);
  }
  if (service.sandbox && service.seed) {
    process.stdout.write(
      consoleBanner({
        url: service.url,
        marketoUrl: service.sandbox.marketo.url,
        dataverseUrl: service.sandbox.dataverse.url,
        marketoWebhookSecret: service.webhookSecrets.marketo,
        graphqlToken: service.graphqlToken ?? '<an API token: npm run token -- create --scope admin --name me>',
        seed: service.seed,
      }),
    );
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      void service.stop(signal).then(
        () => process.exit(0),
        (error: unknown) => {
          logger.fatal({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
