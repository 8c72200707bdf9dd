import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import { claim, enqueue } from '../../src/inbox/inbox.ts';
import { startService } from '../../src/main.ts';
import { createLease } from '../../src/sweep/lease.ts';
import { createLeaseKeeper } from '../../src/sync/leases.ts';
import { lockHolder, tryLock } from '../../src/sync/locks.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

// Crash recovery in seconds (issue 12): leases are short and renewed by a heartbeat; on the
// embedded database a restart reclaims its own leases at once. Times are compared on the
// database's clock, as the leases themselves are; nothing here depends on how fast it runs.

const silent = pino({ level: 'silent' });

describe.each(testEngines())('the lease heartbeat on %s', (engine) => {
  let db!: Database;
  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.recordLock.deleteMany();
      await db.prisma.changeEvent.deleteMany();
    },
  });

  const event = (n: number) => enqueue(db.prisma, { source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: n, dedupeKey: `lease-test:${n}:${Math.random()}` });
  const secondsLeft = async (where: { key?: string; id?: string }) => {
    if (where.key) {
      const [row] = await db.prisma.$queryRaw<{ s: number }[]>`SELECT extract(epoch FROM "expiresAt" - now())::float8 AS s FROM record_lock WHERE key = ${where.key}`;
      return row!.s;
    }
    const [row] = await db.prisma.$queryRaw<{ s: number }[]>`SELECT extract(epoch FROM "nextAttemptAt" - now())::float8 AS s FROM change_event WHERE id = ${where.id!}::uuid`;
    return row!.s;
  };

  it("renews this replica's event and record leases and nobody else's", async () => {
    await Promise.all([event(1), event(2)]);
    const [mine] = await claim(db.prisma, { owner: 'replica-a', batchSize: 1, leaseMs: 2_000, maxAttempts: 8 });
    const [theirs] = await claim(db.prisma, { owner: 'replica-b', batchSize: 1, leaseMs: 2_000, maxAttempts: 8 });
    expect(await tryLock(db.prisma, ['mkto:1'], lockHolder('replica-a'), 2_000)).toBe(true);
    expect(await tryLock(db.prisma, ['mkto:2'], lockHolder('replica-b'), 2_000)).toBe(true);
    // an owner whose name merely starts like ours is not ours
    expect(await tryLock(db.prisma, ['mkto:3'], lockHolder('replica-ab'), 2_000)).toBe(true);

    const keeper = createLeaseKeeper({ db, owner: 'replica-a', heldEvents: () => [mine!.id, theirs!.id], eventLeaseMs: 60_000, recordLeaseMs: 60_000, logger: silent });
    await keeper.beat();

    expect(await secondsLeft({ id: mine!.id })).toBeGreaterThan(30);
    expect(await secondsLeft({ key: 'mkto:1' })).toBeGreaterThan(30);
    expect(await secondsLeft({ id: theirs!.id })).toBeLessThan(3);
    expect(await secondsLeft({ key: 'mkto:2' })).toBeLessThan(3);
    expect(await secondsLeft({ key: 'mkto:3' })).toBeLessThan(3);
  });

  it('does not revive a lease that already expired (it may belong to another worker now)', async () => {
    await event(1);
    const [mine] = await claim(db.prisma, { owner: 'replica-a', batchSize: 1, leaseMs: 2_000, maxAttempts: 8 });
    await db.prisma.$executeRaw`UPDATE change_event SET "nextAttemptAt" = now() - interval '1 second' WHERE id = ${mine!.id}::uuid`;
    await createLeaseKeeper({ db, owner: 'replica-a', heldEvents: () => [mine!.id], eventLeaseMs: 60_000, recordLeaseMs: 60_000, logger: silent }).beat();
    expect(await secondsLeft({ id: mine!.id })).toBeLessThan(0);
  });

  it('renews only the events the worker has in hand: one whose batch was lost in this process runs out and is claimed again', async () => {
    await Promise.all([event(1), event(2)]);
    const [inHand, lost] = await claim(db.prisma, { owner: 'replica-a', batchSize: 2, leaseMs: 2_000, maxAttempts: 8 });
    await createLeaseKeeper({ db, owner: 'replica-a', heldEvents: () => [inHand!.id], eventLeaseMs: 60_000, recordLeaseMs: 60_000, logger: silent }).beat();
    expect(await secondsLeft({ id: inHand!.id })).toBeGreaterThan(30);
    expect(await secondsLeft({ id: lost!.id })).toBeLessThan(3);
  });

  // the embedded database has one connection: no two statements ever hold row locks at once there
  it.skipIf(engine === 'pglite')('skips an event another statement holds instead of waiting for it, so a beat cannot deadlock with a completion', async () => {
    await Promise.all([event(1), event(2)]);
    const [busy, free] = await claim(db.prisma, { owner: 'replica-a', batchSize: 2, leaseMs: 2_000, maxAttempts: 8 });
    const keeper = createLeaseKeeper({ db, owner: 'replica-a', heldEvents: () => [busy!.id, free!.id], eventLeaseMs: 60_000, recordLeaseMs: 60_000, logger: silent });
    // a completion in progress holds the row lock of `busy` until its transaction ends
    await db.prisma.$transaction(async (tx) => {
      await tx.$queryRaw`SELECT id FROM change_event WHERE id = ${busy!.id}::uuid FOR UPDATE`;
      await keeper.beat();
    });
    expect(await secondsLeft({ id: free!.id })).toBeGreaterThan(30);
    expect(await secondsLeft({ id: busy!.id })).toBeLessThan(3);
  });

  it("renews a scheduled job's lease in the same beat while its work runs, and aborts the work once another replica holds it", async () => {
    await db.prisma.schedulerLease.deleteMany();
    const mine = createLease({ db: db.prisma, owner: 'replica-a', ttlMs: 2_000 });
    const theirs = createLease({ db: db.prisma, owner: 'replica-b', ttlMs: 60_000 });
    const keeper = createLeaseKeeper({ db, owner: 'replica-a', eventLeaseMs: 60_000, recordLeaseMs: 60_000, logger: silent });
    const jobSecondsLeft = async () => {
      const [row] = await db.prisma.$queryRaw<{ s: number }[]>`SELECT extract(epoch FROM "expiresAt" - now())::float8 AS s FROM scheduler_lease WHERE key = 'sweep'`;
      return row!.s;
    };
    expect(await mine.acquireNow('sweep')).toBe(true);
    const seen = await keeper.whileHeld(mine, 'sweep', new AbortController().signal, async (signal) => {
      await keeper.beat();
      const renewedTo = await jobSecondsLeft();
      // the lease runs out during a pause (set on the database's clock) and replica-b takes it
      await db.prisma.$executeRaw`UPDATE scheduler_lease SET "expiresAt" = now() - interval '1 second' WHERE key = 'sweep'`;
      expect(await theirs.acquireNow('sweep')).toBe(true);
      const abortedBefore = signal.aborted;
      await keeper.beat();
      return { renewedTo, abortedBefore, abortedAfter: signal.aborted };
    });
    expect(seen.renewedTo).toBeGreaterThan(1);
    expect(seen).toMatchObject({ abortedBefore: false, abortedAfter: true });
    // not renewed for replica-a, and still replica-b's for its full length
    expect(await jobSecondsLeft()).toBeGreaterThan(30);
  });

  it('on start-up, the embedded database reclaims the leases of the run that died; PostgreSQL leaves them to expire', async () => {
    await event(1);
    await claim(db.prisma, { owner: 'dead-run', batchSize: 1, leaseMs: 3_600_000, maxAttempts: 8 });
    await tryLock(db.prisma, ['mkto:1'], lockHolder('dead-run'), 3_600_000);
    const reclaimed = await createLeaseKeeper({ db, owner: 'new-run', heldEvents: () => [], eventLeaseMs: 12_000, recordLeaseMs: 12_000, logger: silent }).reclaimOnStart();
    const claimable = await claim(db.prisma, { owner: 'new-run', batchSize: 10, leaseMs: 12_000, maxAttempts: 8 });
    if (engine === 'pglite') {
      expect(reclaimed).toEqual({ events: 1, records: 1 });
      expect(claimable).toHaveLength(1);
    } else {
      expect(reclaimed).toEqual({ events: 0, records: 0 });
      expect(claimable).toHaveLength(0);
    }
  });
});

describe('a restart on the embedded database', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mds-restart-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('syncs the work a killed run had claimed at once, not after its leases', async () => {
    const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', DATA_DIR: dir, INBOX_POLL_MS: '20', INBOX_LEASE_SECONDS: '3600', SYNC_RECORD_LOCK_SECONDS: '3600' });
    const first = await startService(config, { logger: silent, sandbox: { marketoRateWindowMs: 1_000 } });
    // What a kill -9 mid-batch leaves: the event claimed for an hour, the person's lease held for an hour.
    await first.worker.stop();
    const queued = await enqueue(first.db, { source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: 424242, dedupeKey: 'restart-test' });
    await claim(first.db.prisma, { owner: 'killed-run', batchSize: 10, leaseMs: 3_600_000, maxAttempts: 8 });
    await tryLock(first.db.prisma, ['mkto:424242'], lockHolder('killed-run'), 3_600_000);
    await first.stop('simulated crash');

    const second = await startService(config, { logger: silent, sandbox: { marketoRateWindowMs: 1_000 } });
    try {
      for (let i = 0; i < 400; i++) {
        const row = await second.db.prisma.changeEvent.findUniqueOrThrow({ where: { id: queued.id } });
        if (row.status === 'DONE') break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await second.db.prisma.changeEvent.findUniqueOrThrow({ where: { id: queued.id } })).toMatchObject({ status: 'DONE' });
      expect(await second.db.prisma.recordLock.count({ where: { owner: { startsWith: 'killed-run' } } })).toBe(0);
    } finally {
      await second.stop('test finished');
    }
  });
});
