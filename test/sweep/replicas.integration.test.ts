import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startService, type RunningService } from '../../src/main.ts';
import { freshDatabase, postgresUrl, type TestDatabase } from '../support/database.ts';

// The multi-replica acceptance: two service instances on one PostgreSQL database and one pair of
// simulators (the second reaches the first's simulators as if they were the real systems), both
// with a one-second sweep cron, webhooks off, while records change on both sides. Exactly one
// sweep per tick in total, never two at once, no event processed twice, no duplicate records.

const RUN_SECONDS = 12;
const EVERY_SECOND = '* * * * * *';
const NEVER = '0 0 0 1 1 *';

describe.skipIf(!postgresUrl())('two replicas on one PostgreSQL', () => {
  let database: TestDatabase;
  const replicas: RunningService[] = [];

  beforeAll(async () => {
    database = await freshDatabase('postgres');
    const base = { PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', INBOX_POLL_MS: '50', MARKETO_CALLS_PER_20S: '100', DATABASE_URL: database.url!, SYNC_FULL_CRON: NEVER };
    const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
    // the first replica starts the simulators (sandbox mode) with its cron off until both are up
    const first = await startService(loadConfig({ ...base, SYNC_SWEEP_CRON: EVERY_SECOND }), { logger, sandbox: { marketoRateWindowMs: 1_000 } });
    replicas.push(first);
    const sandbox = first.sandbox!;
    for (const registration of sandbox.dataverse.admin.webhooks()) sandbox.dataverse.admin.unregisterWebhook(registration.id);
    const second = await startService(
      loadConfig({
        ...base,
        SYNC_SWEEP_CRON: EVERY_SECOND,
        MARKETO_BASE_URL: sandbox.marketo.url,
        MARKETO_CLIENT_ID: sandbox.marketo.clientId,
        MARKETO_CLIENT_SECRET: sandbox.marketo.clientSecret,
        DYNAMICS_URL: sandbox.dataverse.url,
        DYNAMICS_TOKEN_URL: sandbox.dataverse.tokenUrl,
        DYNAMICS_TENANT_ID: sandbox.dataverse.tenantId,
        DYNAMICS_CLIENT_ID: sandbox.dataverse.clientId,
        DYNAMICS_CLIENT_SECRET: sandbox.dataverse.clientSecret,
        MARKETO_WEBHOOK_SECRET: 'replica-two-marketo-secret',
        DYNAMICS_WEBHOOK_SECRET: 'replica-two-dynamics-secret',
      }),
      { logger },
    );
    replicas.push(second);
  }, 60_000);

  afterAll(async () => {
    for (const replica of replicas.reverse()) await replica.stop('test finished');
    await database?.drop();
  });

  it('one sweep per tick in total, none overlapping, nothing processed twice, no duplicates', { timeout: 60_000 }, async () => {
    const [first] = replicas;
    const dataverse = first!.sandbox!.dataverse.admin;
    const marketo = first!.sandbox!.marketo.admin;
    const prisma = first!.db.prisma;
    const started = Date.now();
    const leads: string[] = [];
    let i = 0;
    while (Date.now() - started < RUN_SECONDS * 1000) {
      i++;
      const created = dataverse.create(i % 2 ? 'lead' : 'contact', { lastname: `Replica ${i}`, emailaddress1: `replica.${i}@example.com` });
      leads.push(String(created[i % 2 ? 'leadid' : 'contactid']));
      const links = await prisma.syncLink.findMany({ take: 2, orderBy: { updatedAt: 'asc' } });
      for (const link of links) {
        if (i % 3 === 0) marketo.updateLead(link.marketoId, { city: `City ${i}` });
        else dataverse.update(link.dynamicsEntity === 'LEAD' ? 'lead' : 'contact', link.dynamicsId, { jobtitle: `Title ${i}` });
      }
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    // let the last sweeps and their events finish
    const deadline = Date.now() + 20_000;
    for (;;) {
      const open = await prisma.changeEvent.count({ where: { status: { not: 'DONE' } } });
      const linked = await prisma.syncLink.count();
      if ((open === 0 && linked === leads.length) || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    for (const replica of replicas) await replica.sweeper.stop();

    const runs = await prisma.syncRun.findMany({ orderBy: { startedAt: 'asc' } });
    expect(runs.length).toBeGreaterThanOrEqual(RUN_SECONDS / 2);
    expect(new Set(runs.map((r) => r.owner)).size).toBeGreaterThanOrEqual(1);
    const perSecond = new Map<number, number>();
    for (const run of runs) {
      const second = Math.floor(run.startedAt.getTime() / 1000);
      perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
    }
    expect(Math.max(...perSecond.values())).toBe(1);
    for (let k = 1; k < runs.length; k++) {
      expect(runs[k]!.startedAt.getTime()).toBeGreaterThanOrEqual(runs[k - 1]!.finishedAt!.getTime());
    }
    // stopping the replicas may cut the last sweep short; every other one succeeded
    expect(runs.slice(0, -1).filter((r) => r.status !== 'SUCCEEDED')).toEqual([]);

    const events = await prisma.changeEvent.findMany({ select: { status: true, attempts: true, dedupeKey: true } });
    expect(events.filter((e) => e.status !== 'DONE')).toEqual([]);
    expect(events.filter((e) => e.attempts > 1)).toEqual([]);

    // every Dynamics record linked once, to its own person; no person created twice
    expect(await prisma.syncLink.count()).toBe(leads.length);
    const emails = marketo.listLeads({ limit: 100_000 }).map((p) => String(p.email).toLowerCase());
    expect(emails.length).toBe(new Set(emails).size);
    expect(emails.length).toBe(leads.length);
    const created = await prisma.activity.groupBy({ by: ['dynamicsId'], where: { type: 'CREATED_IN_MARKETO' }, _count: true });
    expect(created.filter((c) => c._count > 1)).toEqual([]);
    expect(dataverse.count('lead') + dataverse.count('contact')).toBe(leads.length);
  });
});
