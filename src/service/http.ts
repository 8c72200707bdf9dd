import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { bearerSecret } from '../auth/tokens.ts';
import type { Config } from '../config.ts';
import { createConsole } from '../console/console.routes.ts';
import { createLiveReads } from '../console/live.ts';
import { createConsoleSessions } from '../console/session.ts';
import { createGraphQLHandler } from '../graphql/handler.ts';
import { createApp, createMetricsApp } from '../http/app.ts';
import { createHealth, type ConnectorProbe } from '../http/health.ts';
import type { Logger } from '../logger.ts';
import type { projectPaths } from '../paths.ts';
import { createRateLimiter } from '../security/rate-limit.ts';
import type { Closers } from './closers.ts';
import type { Engine } from './engine.ts';
import type { WebhookIntake } from './intake.ts';
import type { Store } from './store.ts';
import type { ServiceTokens } from './tokens.ts';
import type { Vendors } from './vendors.ts';

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

interface HttpParts {
  store: Store;
  vendors: Vendors;
  engine: Engine;
  webhooks: WebhookIntake;
  tokens: ServiceTokens;
  logger: Logger;
  owner: string;
  paths: ReturnType<typeof projectPaths>;
  /** true once shutdown began: intake answers 503 and /readyz says so */
  draining: () => boolean;
}

function graphqlHandler(config: Config, parts: HttpParts, probes: ConnectorProbe[], sessions: ReturnType<typeof createConsoleSessions>) {
  const { db, suppressions } = parts.store;
  const { marketo, dynamics, marketoClient, dataverseClient } = parts.vendors;
  const { mappings, operator, sweeper, intake, batchSyncs } = parts.engine;
  return createGraphQLHandler({
    sessions,
    live: createLiveReads({ marketo, dynamics, mappings }),
    prisma: db.prisma,
    logger: parts.logger.child({ component: 'graphql' }),
    tokens: parts.tokens.tokens,
    graphiql: !config.production,
    production: config.production,
    firstTokenHint: parts.tokens.firstTokenHint,
    erasure: { suppressions, owner: parts.owner, leaseMs: config.sync.recordLockMs },
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
}

/** The one Express app: health, metrics, the console, /graphql and the webhook receivers. Not listening yet. */
export function createServiceApp(config: Config, parts: HttpParts) {
  const { db } = parts.store;
  const { tokens, firstTokenHint } = parts.tokens;
  const mode = config.sandbox ? 'sandbox' : 'live';
  const probes = [
    probe('marketo', mode, () => parts.vendors.marketoClient.describeLeadFields()),
    probe('dynamics', mode, () => parts.vendors.dataverseClient.whoAmI()),
  ];
  const health = createHealth({ db, migrationsDir: parts.paths.migrationsDir, sandbox: config.sandbox, probes, draining: parts.draining });
  // the console's sessions are stored (as hashes) and name a token of this set; revoking the token ends them
  const sessions = createConsoleSessions({ prisma: db.prisma, tokens });
  const loginLimiter = createRateLimiter(db.prisma, { limit: config.security.loginAttemptsPer15Min, windowMs: 15 * 60_000 });
  const graphql = graphqlHandler(config, parts, probes, sessions);
  return createApp({
    metrics: { ...parts.engine.metrics, separateListener: config.metricsPort !== undefined },
    authorizeOps: async (authorization) => (await tokens.authenticate(bearerSecret(authorization))) !== null,
    console: createConsole({ sessions, sandbox: config.sandbox, firstTokenHint, loginLimiter }),
    trustProxy: config.trustProxy,
    logger: parts.logger,
    health,
    bodyLimitBytes: config.server.bodyLimitBytes,
    draining: parts.draining,
    graphql: graphql.middleware,
    webhooks: parts.webhooks,
  });
}

export interface Listening {
  server: Server;
  url: string;
  /** GET /metrics on its own listener (METRICS_PORT) */
  metricsUrl: string | undefined;
}

/** Listens on the configured port, and /metrics on METRICS_PORT when one is set. */
export async function listen(
  config: Config,
  app: ReturnType<typeof createServiceApp>,
  deps: { metrics: Engine['metrics']; logger: Logger; closers: Closers },
): Promise<Listening> {
  const { logger } = deps;
  const server: Server = app.listen(config.server.port, config.server.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
  const url = `http://${host}:${address.port}`;
  logger.info({ url }, 'listening');
  if (config.metricsPort === undefined) return { server, url, metricsUrl: undefined };
  const metricsServer = createMetricsApp(deps.metrics.handler, logger).listen(config.metricsPort, config.server.host);
  await once(metricsServer, 'listening');
  const metricsUrl = `http://${host}:${(metricsServer.address() as AddressInfo).port}/metrics`;
  deps.closers.add('metrics listener', () => new Promise<void>((resolve) => {
    metricsServer.close(() => resolve());
    metricsServer.closeAllConnections();
  }));
  logger.info({ url: metricsUrl }, 'metrics listening (METRICS_PORT)');
  return { server, url, metricsUrl };
}
