import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServiceProcess, freePort, type ServiceProcess } from '../../src/chaos/service-process.ts';
import { openDatabase, type Database } from '../../src/db/database.ts';
import { projectRoot } from '../../src/paths.ts';
import { startSandbox, type Sandbox } from '../../src/sandbox/sandbox.ts';
import { freshDatabase, postgresUrl, type TestDatabase } from '../support/database.ts';

// The multi-replica acceptance: two service processes on one PostgreSQL database, both reaching
// the same simulators as if they were the real systems, both with a one-second sweep cron and no
// webhooks, for 30 seconds while records change on both sides. Exactly one sweep per tick in
// total, never two at once, no event processed twice, no duplicate records.

const RUN_SECONDS = 30;
const EVERY_SECOND = '* * * * * *';
const NEVER = '0 0 0 1 1 *';

describe.skipIf(!postgresUrl())('two replica processes on one PostgreSQL', () => {
  let database: TestDatabase;
  let sandbox: Sandbox;
  let db: Database;
  const replicas: ServiceProcess[] = [];

  beforeAll(async () => {
    database = await freshDatabase('postgres');
    sandbox = await startSandbox({ marketoRateWindowMs: 1_000 });
    const logDir = mkdtempSync(join(tmpdir(), 'mds-replicas-'));
    const env = {
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      INBOX_POLL_MS: '50',
      // a large share that still leaves the instance room for the limiter's bucket (20)
      MARKETO_CALLS_PER_20S: '80',
      DATABASE_URL: database.url!,
      SYNC_SWEEP_CRON: EVERY_SECOND,
      SYNC_FULL_CRON: NEVER,
      MARKETO_BASE_URL: sandbox.marketo.url,
      MARKETO_CLIENT_ID: sandbox.marketo.clientId,
      MARKETO_CLIENT_SECRET: sandbox.marketo.clientSecret,
      DYNAMICS_URL: sandbox.dataverse.url,
      DYNAMICS_TOKEN_URL: sandbox.dataverse.tokenUrl,
      DYNAMICS_TENANT_ID: sandbox.dataverse.tenantId,
      DYNAMICS_CLIENT_ID: sandbox.dataverse.clientId,
      DYNAMICS_CLIENT_SECRET: sandbox.dataverse.clientSecret,
      MARKETO_WEBHOOK_SECRET: 'replica-test-marketo-secret',
      DYNAMICS_WEBHOOK_SECRET: 'replica-test-dynamics-secret',
      // with credentials the service is in production mode: it needs a token and never makes one
      GRAPHQL_API_TOKEN: 'replica-test-graphql-token-0123',
    };
    for (const name of ['a', 'b']) {
      replicas.push(
        createServiceProcess({ projectRoot: projectRoot(), env, baseEnv: process.env, port: await freePort(), logFile: join(logDir, `replica-${name}.log`) }),
      );
    }
    // started together: the migrations' advisory lock and the sweep lease are part of the test
    await Promise.all(replicas.map((r) => r.start()));
    db = await openDatabase({ url: database.url!, dataDir: 'unused' });
  }, 120_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => (r.running() ? r.stop() : Promise.resolve(null))));
    await db?.close();
    await sandbox?.close();
    await database?.drop();
  });

  it('one sweep per tick in total, none overlapping, nothing processed twice, no duplicates', { timeout: 300_000 }, async () => {
    const dataverse = sandbox.dataverse.admin;
    const marketo = sandbox.marketo.admin;
    const prisma = db.prisma;
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
    // a bound against a hang, not a speed check: on a busy machine the last events take a while
    const deadline = Date.now() + 180_000;
    for (;;) {
      const open = await prisma.changeEvent.count({ where: { status: { not: 'DONE' } } });
      const linked = await prisma.syncLink.count();
      if ((open === 0 && linked === leads.length) || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    // SIGTERM: each replica stops its sweep scheduler (awaiting a running sweep) and its worker
    expect(await Promise.all(replicas.map((r) => r.stop()))).toEqual([0, 0]);

    const runs = await prisma.syncRun.findMany({ orderBy: { startedAt: 'asc' } });
    // how many ticks ran depends on how busy the machine is (a tick is skipped while a sweep runs);
    // what must hold is below: at most one per tick, never overlapping, all succeeded
    expect(runs.length).toBeGreaterThanOrEqual(2);
    expect(runs.every((r) => r.owner.length > 0)).toBe(true);
    // each run names the cron tick it served (the same slot on every replica): no tick twice
    const ticks = runs.map((r) => r.scheduledFor?.toISOString());
    expect(ticks.every((t) => t !== undefined)).toBe(true);
    expect(new Set(ticks).size).toBe(runs.length);
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
