import { pino } from 'pino';
import request from 'supertest';
import { loadConfig } from '../../src/config.ts';
import type { DatabaseEngine } from '../../src/db/database.ts';
import { startService, type RunningService, type ServiceOptions } from '../../src/main.ts';
import { freshDatabase, migratedEmbeddedDump, type TestDatabase } from './database.ts';

/** The real service in sandbox mode (both simulators in-process) on a fresh database. */
export interface TestService {
  service: RunningService;
  marketo: NonNullable<RunningService['sandbox']>['marketo']['admin'];
  dataverse: NonNullable<RunningService['sandbox']>['dataverse']['admin'];
  http: ReturnType<typeof request>;
  /** POST a Marketo flow-action webhook with the right secret */
  marketoWebhook(path: 'sync-person' | 'person-changed', body: unknown): request.Test;
  /** waits until Dataverse's webhooks are delivered and the inbox has nothing due */
  settle(timeoutMs?: number): Promise<void>;
  activities(marketoId: number): Promise<{ type: string; message: string | null; fields: unknown }[]>;
  stop(): Promise<void>;
}

export async function bootService(engine: DatabaseEngine, env: Record<string, string> = {}, options: Pick<ServiceOptions, 'interceptVendorHttp' | 'webhookClock' | 'batchSyncPageSize'> = {}): Promise<TestService> {
  const database: TestDatabase = await freshDatabase(engine);
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    DATA_DIR: 'memory://',
    INBOX_POLL_MS: '20',
    ...(database.url ? { DATABASE_URL: database.url } : {}),
    ...env,
  });
  const service = await startService(config, {
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    sandbox: { marketoRateWindowMs: 1_000 },
    ...(database.url ? {} : { embeddedStartFrom: await migratedEmbeddedDump() }),
    ...options,
  });
  const sandbox = service.sandbox!;
  const http = request(service.url);
  return {
    service,
    marketo: sandbox.marketo.admin,
    dataverse: sandbox.dataverse.admin,
    http,
    marketoWebhook(path, body) {
      return request(service.url)
        .post(`/webhooks/marketo/${path}`)
        .set('content-type', 'application/json')
        .set('x-webhook-secret', service.webhookSecrets.marketo)
        .send(JSON.stringify(body));
    },
    // a deadline against hangs, not a speed check: a busy machine may need much longer than an idle one
    async settle(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      let quiet = 0;
      while (Date.now() < deadline) {
        await sandbox.dataverse.admin.flushWebhooks();
        const due = await service.db.prisma.changeEvent.count({ where: { status: { in: ['PENDING', 'PROCESSING'] } } });
        quiet = due === 0 ? quiet + 1 : 0;
        // twice quiet in a row: a webhook our own write triggered has had time to arrive
        if (quiet >= 3) return;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      const stuck = await service.db.prisma.changeEvent.findMany({ where: { status: { not: 'DONE' } } });
      throw new Error(`inbox did not settle: ${JSON.stringify(stuck)}`);
    },
    async activities(marketoId) {
      return service.db.prisma.activity.findMany({
        where: { marketoId },
        orderBy: { id: 'asc' },
        select: { type: true, message: true, fields: true },
      });
    },
    async stop() {
      await service.stop('test finished');
      await database.drop();
    },
  };
}
