 
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { DataverseClientStats } from '../../src/connectors/dynamics/dataverse.client.ts';
import type { MarketoClientStats } from '../../src/connectors/marketo/marketo.client.ts';
import type { Database } from '../../src/db/database.ts';
import { replay } from '../../src/inbox/inbox.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { createRetentionService, readLastPrune } from '../../src/retention/index.ts';
import { cutoffs, defaultRetention, pruneOnce, type RetentionPolicy } from '../../src/retention/prune.ts';
import { createLease } from '../../src/sweep/lease.ts';
import { createLeaseKeeper } from '../../src/sync/leases.ts';
import { gql, graphqlApp, testDeps } from '../graphql/support.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

// Retention with an injected clock: which rows are due, that a pass works in batches and a pass
// stopped half-way is finished by the next, that only the lease holder prunes, and that each pass
// is reported (syncStatus.lastPrune, metrics).

const DAY = 86_400_000;
const NOW = new Date('2026-11-29T12:00:00Z');
const daysAgo = (days: number, from = NOW) => new Date(from.getTime() - days * DAY);
const silent = pino({ level: 'silent' });

describe.each(testEngines())('retention on %s', (engine) => {
  let db!: Database;
  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.activity.deleteMany();
      await db.prisma.changeEvent.deleteMany();
      await db.prisma.syncRun.deleteMany();
      await db.prisma.auditEntry.deleteMany();
      await db.prisma.throughputMinute.deleteMany();
      await db.prisma.createIntent.deleteMany();
      await db.prisma.serviceSetting.deleteMany();
      await db.prisma.schedulerLease.deleteMany();
    },
  });

  let serial = 0;
  async function event(status: 'DONE' | 'DEAD' | 'PENDING' | 'FAILED', ageDays: number) {
    serial += 1;
    const at = daysAgo(ageDays);
    return db.prisma.changeEvent.create({
      data: {
        source: 'MARKETO',
        origin: 'WEBHOOK',
        operation: 'UPDATE',
        marketoId: serial,
        dedupeKey: `retention:${serial}`,
        status,
        receivedAt: at,
        completedAt: status === 'DONE' ? at : null,
      },
    });
  }
  const activity = (ageDays: number, changeEventId?: string) =>
    db.prisma.activity.create({ data: { type: 'UPDATED_IN_DYNAMICS', marketoId: 1, occurredAt: daysAgo(ageDays), changeEventId: changeEventId ?? null } });
  const run = (ageDays: number, status: 'SUCCEEDED' | 'RUNNING' = 'SUCCEEDED') =>
    db.prisma.syncRun.create({ data: { trigger: 'SCHEDULE', owner: 'x', status, startedAt: daysAgo(ageDays), finishedAt: status === 'RUNNING' ? null : daysAgo(ageDays) } });
  const audit = (ageDays: number) => db.prisma.auditEntry.create({ data: { action: 'requestSweep', tokenName: 'env', outcome: 'OK', at: daysAgo(ageDays) } });

  it('computes each table\'s cutoff from the pass\'s clock and the settings', () => {
    expect(cutoffs(defaultRetention, NOW)).toEqual({
      change_event: daysAgo(14),
      activity: daysAgo(400),
      sync_run: daysAgo(90),
      audit_entry: daysAgo(400),
      throughput_minute: daysAgo(14),
      create_intent: daysAgo(14),
    });
  });

  it('deletes only what is due: old DONE events, old activities, old finished runs, old audit entries', async () => {
    const keptActivityOfPrunedEvent = await event('DONE', 20);
    const kept = {
      recentDone: await event('DONE', 13),
      oldDead: await event('DEAD', 300),
      oldPending: await event('PENDING', 300),
      oldFailed: await event('FAILED', 300),
    };
    await event('DONE', 15);
    const survivor = await activity(10, keptActivityOfPrunedEvent.id);
    await activity(401);
    await activity(399);
    await run(91);
    await run(89);
    await run(200, 'RUNNING');
    await audit(401);
    await audit(1);
    // throughput tallies go with the done events they count
    await db.prisma.throughputMinute.createMany({
      data: [
        { minute: daysAgo(15), source: 'MARKETO', latencyBucket: 80, events: 3 },
        { minute: daysAgo(15), source: 'DYNAMICS', latencyBucket: -1, events: 1 },
        { minute: daysAgo(13), source: 'MARKETO', latencyBucket: 80, events: 2 },
      ],
    });

    const result = await pruneOnce({ db: db.prisma, policy: defaultRetention, now: () => NOW });
    expect(result.removed).toEqual({ change_event: 2, activity: 1, sync_run: 1, audit_entry: 1, throughput_minute: 2, create_intent: 0 });
    expect(result.interrupted).toBe(false);
    expect((await db.prisma.changeEvent.findMany({ select: { id: true } })).map((e) => e.id).sort()).toEqual(Object.values(kept).map((e) => e.id).sort());
    // the activity of a pruned event stays (it has its own retention), without the dangling reference
    expect(await db.prisma.activity.findUniqueOrThrow({ where: { id: survivor.id } })).toMatchObject({ changeEventId: null });
    expect(await db.prisma.activity.count()).toBe(2);
    expect((await db.prisma.syncRun.findMany()).map((r) => r.status).sort()).toEqual(['RUNNING', 'SUCCEEDED']);
    expect(await db.prisma.auditEntry.count()).toBe(1);
    expect(await db.prisma.throughputMinute.findMany({ select: { events: true } })).toEqual([{ events: 2 }]);

    // a month later (the injected clock moves, nothing sleeps) the recent ones are due too
    const later = await pruneOnce({ db: db.prisma, policy: defaultRetention, now: () => new Date(NOW.getTime() + 30 * DAY) });
    expect(later.removed).toEqual({ change_event: 1, activity: 1, sync_run: 1, audit_entry: 0, throughput_minute: 1, create_intent: 0 });
    expect(await db.prisma.changeEvent.count({ where: { status: 'DEAD' } })).toBe(1);
  });

  it('never removes an unsettled journal entry (PENDING activity), however old; settled ones go by age', async () => {
    const pending = await db.prisma.activity.create({ data: { type: 'UPDATED_IN_DYNAMICS', marketoId: 7, state: 'PENDING', plannedRevision: 3, occurredAt: daysAgo(5_000) } });
    const settled = await db.prisma.activity.create({ data: { type: 'UPDATED_IN_DYNAMICS', marketoId: 7, state: 'SUPERSEDED', occurredAt: daysAgo(5_000) } });
    const result = await pruneOnce({ db: db.prisma, policy: { ...defaultRetention, activityDays: 1 }, now: () => NOW });
    expect(result.removed.activity).toBe(1);
    expect((await db.prisma.activity.findMany()).map((a) => a.id)).toEqual([pending.id]);
    expect(await db.prisma.activity.findUnique({ where: { id: settled.id } })).toBeNull();
  });

  it("redacts a DEAD event's payload once it is old enough, keeping what a replay needs, and the event stays replayable", async () => {
    const body = { marketoId: 42, email: 'dead.letter@example.com', firstName: 'Dora', syncAs: 'contact', assignTo: 'owner@corp.example' };
    const dead = (ageDays: number, key: string) =>
      db.prisma.changeEvent.create({
        data: { source: 'MARKETO', origin: 'FLOW_ACTION', operation: 'SYNC_PERSON', marketoId: 42, dedupeKey: key, status: 'DEAD', payload: body, lastError: 'gave up', updatedAt: daysAgo(ageDays) },
      });
    const old = await dead(31, 'dead:old');
    const young = await dead(29, 'dead:young');
    const waiting = await db.prisma.changeEvent.create({ data: { source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: 43, dedupeKey: 'pending:old', payload: body, receivedAt: daysAgo(60) } });
    const result = await pruneOnce({ db: db.prisma, policy: defaultRetention, now: () => NOW });
    expect(result.redactedPayloads).toBe(1);
    const redacted = await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: old.id } });
    expect(redacted.payload).toEqual({ redactedAt: expect.stringMatching(/^2026-11-29T12:00:00/), syncAs: 'contact', assignTo: 'owner@corp.example' });
    expect(JSON.stringify(redacted)).not.toContain('dead.letter@example.com');
    expect((await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: young.id } })).payload).toEqual(body);
    expect((await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: waiting.id } })).payload).toEqual(body);
    // the event itself stays: an operator replays it, and the engine reads the person afresh
    expect(await replay(db.prisma, old.id)).toBe(true);
    expect(await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: old.id } })).toMatchObject({ status: 'PENDING', marketoId: 42, operation: 'SYNC_PERSON' });
    // a second pass has nothing more to redact
    expect((await pruneOnce({ db: db.prisma, policy: defaultRetention, now: () => NOW })).redactedPayloads).toBe(0);
  });

  it('deletes settled creates past the done-event retention and never an open one, however old', async () => {
    const intent = (ageDays: number, state: 'OPEN' | 'DONE' | 'FAILED') =>
      db.prisma.createIntent.create({
        data: { direction: 'TO_DYNAMICS', state, marketoId: 1, dynamicsEntity: 'LEAD', dynamicsId: randomUUID(), source: {}, sent: {}, createdAt: daysAgo(ageDays), settledAt: state === 'OPEN' ? null : daysAgo(ageDays) },
      });
    const kept = await Promise.all([intent(30, 'OPEN'), intent(13, 'DONE')]);
    await Promise.all([intent(15, 'DONE'), intent(20, 'FAILED')]);
    const result = await pruneOnce({ db: db.prisma, policy: defaultRetention, now: () => NOW });
    expect(result.removed.create_intent).toBe(2);
    expect((await db.prisma.createIntent.findMany()).map((i) => i.id).sort()).toEqual(kept.map((i) => i.id).sort());
  });

  it('works in batches of the configured size, one statement each, and a pass stopped half-way is finished by the next', async () => {
    for (let i = 0; i < 7; i += 1) await event('DONE', 30 + i);
    for (let i = 0; i < 5; i += 1) await activity(500 + i);
    const policy: RetentionPolicy = { ...defaultRetention, batchSize: 3 };
    const stop = new AbortController();
    let pauses = 0;
    const first = await pruneOnce({
      db: db.prisma,
      policy,
      now: () => NOW,
      signal: stop.signal,
      pause: () => {
        pauses += 1;
        stop.abort(); // the "crash": nothing runs after the first batch
        return Promise.resolve();
      },
    });
    expect(first).toMatchObject({ interrupted: true, batches: 1, removed: { change_event: 3, activity: 0 } });
    expect(pauses).toBe(1);
    expect(await db.prisma.changeEvent.count()).toBe(4);

    const second = await pruneOnce({ db: db.prisma, policy, now: () => NOW });
    // 4 events: 3 + 1; 5 activities: 3 + 2; runs, audit, throughput tallies, creates and DEAD payloads: one empty batch each
    expect(second).toMatchObject({ interrupted: false, batches: 9, removed: { change_event: 4, activity: 5, sync_run: 0, audit_entry: 0 } });
    expect(await db.prisma.changeEvent.count()).toBe(0);
  });

  it('prunes on the lease holder only, records the pass for syncStatus.lastPrune and the metrics', async () => {
    await event('DONE', 40);
    await activity(800);
    const metrics = createMetrics({
      db,
      processMetrics: false,
      marketoStats: () => ({ calls: 0, errors: {}, retries: 0, dailyCalls: 0 }) as unknown as MarketoClientStats,
      dataverseStats: () => ({ totalCalls: 0, totalErrors: 0, endpoints: {} }) as unknown as DataverseClientStats,
    });
    const leases = createLeaseKeeper({ db, owner: 'replica-b', eventLeaseMs: 60_000, recordLeaseMs: 60_000, logger: silent });
    const service = createRetentionService({ db, policy: defaultRetention, cron: undefined, owner: 'replica-b', logger: silent, now: () => NOW, onPruned: (r) => metrics.recordPrune(r), leases });
    const other = createLease({ db: db.prisma, owner: 'replica-a', ttlMs: 60_000 });
    expect(await other.acquireNow('retention')).toBe(true);
    expect(await service.pruneNow()).toBeNull();
    expect(await db.prisma.changeEvent.count()).toBe(1);
    await other.release('retention');

    const result = await service.pruneNow();
    expect(result?.removed).toEqual({ change_event: 1, activity: 1, sync_run: 0, audit_entry: 0, throughput_minute: 0, create_intent: 0 });
    expect(await readLastPrune(db.prisma)).toMatchObject({ at: NOW, removed: result!.removed, interrupted: false });
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/mds_retention_removed_total\{table="change_event",service="marketo-dynamics-sync"\} 1/);
    expect(text).toMatch(/mds_retention_removed_total\{table="activity",service="marketo-dynamics-sync"\} 1/);
    expect(text).toContain(`mds_retention_last_pass_timestamp_seconds{service="marketo-dynamics-sync"} ${NOW.getTime() / 1000}`);

    const app = graphqlApp(testDeps(db.prisma));
    const res = await gql(app, '{ syncStatus { lastPrune { at interrupted removed { changeEvents activities syncRuns auditEntries } } } }');
    expect(res.body.data.syncStatus.lastPrune).toEqual({
      at: NOW.toISOString(),
      interrupted: false,
      removed: { changeEvents: 1, activities: 1, syncRuns: 0, auditEntries: 0 },
    });
    await service.stop();
  });
});
