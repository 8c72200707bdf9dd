import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { pathToFileURL } from 'node:url';
import type { ApiTokenService } from './auth/tokens.ts';
import { loadConfigOrExit, type Config } from './config.ts';
import { consoleBanner } from './console/banner.ts';
import type { Database } from './db/database.ts';
import { createLogger, type Logger } from './logger.ts';
import { projectPaths } from './paths.ts';
import type { RetentionService } from './retention/index.ts';
import type { Sandbox } from './sandbox/sandbox.ts';
import type { SandboxSeed } from './sandbox/seed.ts';
import { createClosers } from './service/closers.ts';
import { assembleEngine } from './service/engine.ts';
import { createServiceApp, listen } from './service/http.ts';
import { createWebhookIntake } from './service/intake.ts';
import type { ServiceOptions } from './service/options.ts';
import { startSchedules, wireSandbox } from './service/schedules.ts';
import { createStop } from './service/shutdown.ts';
import { openStore } from './service/store.ts';
import { prepareTokens } from './service/tokens.ts';
import { connectVendors } from './service/vendors.ts';
import type { SweepService } from './sweep/index.ts';
import type { BatchSyncRunner } from './sync/batch-sync-person.ts';
import type { LeaseKeeper } from './sync/leases.ts';
import type { SyncWorker } from './sync/worker.ts';

export type { ServiceOptions } from './service/options.ts';
export { FIRST_TOKEN_HINT } from './service/tokens.ts';

// The composition root: config -> store (database, migrations) -> vendors (clients, or the
// sandbox simulators) -> engine (sync, inbox worker, sweep) -> intake (webhooks) -> HTTP ->
// schedules; shutdown closes the same parts in the reverse order. Each step is a factory in
// src/service/; everything else receives what it needs from here and nothing reaches for globals.

export interface RunningService {
  url: string;
  db: Database;
  logger: Logger;
  worker: SyncWorker;
  /** the reconciliation sweep: scheduler, lease and `requestSweep()` */
  sweeper: SweepService;
  /** Batch Sync Person: queues lists (`start`) and works through them in the background */
  batchSyncs: BatchSyncRunner;
  /** the replica's lease heartbeat (`beat()` renews now: tests, after a long pause) */
  leases: LeaseKeeper;
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

export async function startService(config: Config, options: ServiceOptions = {}): Promise<RunningService> {
  const logger = options.logger ?? createLogger({ level: config.log.level });
  const paths = projectPaths();
  const closers = createClosers(logger);
  // this process: a member of the vendor budgets, and the holder of the leases it takes
  const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  // aborted half-way through the shutdown budget (service/shutdown.ts)
  const shutdown = new AbortController();
  try {
    const store = await openStore(config, { logger, paths, closers, startFrom: options.embeddedStartFrom });
    const vendors = await connectVendors(config, { db: store.db, logger, closers, owner, shutdown: shutdown.signal, options });
    const engine = await assembleEngine(config, store, vendors, { logger, closers, owner, shutdown: shutdown.signal, batchSyncPageSize: options.batchSyncPageSize });
    const webhooks = createWebhookIntake(config, store, vendors, engine, { logger, options });
    const tokens = await prepareTokens(config, { db: store.db, shared: vendors.shared, logger });
    let draining = false;
    const app = createServiceApp(config, { store, vendors, engine, webhooks, tokens, logger, owner, paths, draining: () => draining });
    const { server, url, metricsUrl } = await listen(config, app, { metrics: engine.metrics, logger, closers });
    const retention = startSchedules(config, store, engine, { logger, closers, owner });
    const seed = await wireSandbox(url, store, vendors, logger);
    return {
      url,
      db: store.db,
      logger,
      worker: engine.worker,
      sweeper: engine.sweeper,
      batchSyncs: engine.batchSyncs,
      leases: engine.leases,
      sandbox: vendors.sandbox,
      seed,
      webhookSecrets: vendors.webhookSecrets,
      graphqlToken: tokens.graphqlToken,
      graphqlTokenGenerated: tokens.graphqlTokenGenerated,
      tokens: tokens.tokens,
      retention,
      refreshMetadata: () => engine.mappings.invalidate(),
      metricsUrl,
      stop: createStop(config, { server, shutdown, closers, logger, beginDraining: () => (draining = true) }),
    };
  } catch (error) {
    await closers.closeAll();
    throw error;
  }
}

async function main(): Promise<void> {
  const config = loadConfigOrExit();
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
