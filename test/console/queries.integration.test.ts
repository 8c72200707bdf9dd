/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-return -- GraphQL answers are checked by assertions, not by types */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { createRateLimiter } from '../../src/security/rate-limit.ts';
import type { LiveReads } from '../../src/graphql/context.ts';
import { enqueue } from '../../src/inbox/inbox.ts';
import { fullScope } from '../../src/sweep/cursors.ts';
import { completeEvent } from '../support/inbox.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';
import { CONTACT_ID, fakeActions, gql, graphqlApp, LEAD_ID, READ_TOKEN, seed, testDeps, TOKEN } from '../graphql/support.ts';

// The queries the operator console added to the API, against a real database (PGlite always,
// PostgreSQL when TEST_DATABASE_URL is set), with the live reads of both systems faked.

const LINEAGE = /* GraphQL */ `
  query($q: String!) {
    findPeople(query: $q) {
      marketoId liveErrors
      fieldLineage {
        field marketoValue dynamicsValue liveRead agreedValue inAgreement lastSetBy lastSetAt state reason heldBackValue
        lastChange { id type } lastChangeEvent { id origin source }
      }
    }
  }
`;

describe.each(testEngines())('console queries on %s', (engine) => {
  let db: Database;
  let seeded: Awaited<ReturnType<typeof seed>>;
  const reads: unknown[] = [];
  const live: LiveReads = {
    records(link) {
      reads.push(link);
      return Promise.resolve(
        link.marketoId === 1001
          ? { marketo: { email: 'ada@example.com', firstName: 'Ada', title: 'VP Sales' }, dynamics: { email: 'ada@example.com', firstName: 'Ada', title: 'Chief of Sales' }, dynamicsSyncFilter: null, errors: [] }
          : { marketo: null, dynamics: null, dynamicsSyncFilter: null, errors: ['Dynamics: 503 Service Unavailable'] },
      );
    },
    refreshFieldAccess: () => Promise.resolve(),
  };
  const app = (overrides = {}) => graphqlApp(testDeps(db.prisma, { live, ...overrides }));

  useMigratedDatabase(engine, { opened: (opened) => (db = opened) });
  beforeAll(async () => {
    seeded = await seed(db.prisma);
    // what the sync records when it checks a field: the contact's phone column is not updatable
    await db.prisma.fieldMapping.updateMany({
      where: { entity: 'LEAD' },
      data: { access: { dynamics: { exists: true, canRead: true, canUpdate: true, canCreate: true }, marketo: { exists: true, updateable: true, dataType: 'string' } } },
    });
    await db.prisma.fieldMapping.update({
      where: { entity_canonicalField: { entity: 'LEAD', canonicalField: 'company' } },
      data: { access: { dynamics: { exists: true, canRead: false, canUpdate: false, canCreate: false }, marketo: { exists: true, updateable: true, dataType: 'string' } } },
    });
    await db.prisma.fieldMapping.updateMany({
      where: { entity: 'CONTACT' },
      data: { access: { dynamics: { exists: true, canRead: true, canUpdate: true, canCreate: true }, marketo: { exists: true, updateable: true, dataType: 'string' } } },
    });
  });

  it('findPeople finds a person by email whatever its case, by Marketo id and by Dynamics id', async () => {
    for (const q of ['ADA@Example.com', '1001', LEAD_ID.toUpperCase(), `{${LEAD_ID}}`]) {
      const res = await gql(app(), 'query($q: String!) { findPeople(query: $q) { marketoId dynamicsId } }', { q });
      expect(res.body.data.findPeople, q).toEqual([{ marketoId: '1001', dynamicsId: LEAD_ID }]);
    }
    const none = await gql(app(), '{ findPeople(query: "nobody@example.com") { marketoId } }');
    expect(none.body.data.findPeople).toEqual([]);
    const bad = await gql(app(), '{ findPeople(query: "ada") { marketoId } }', {}, { expectErrors: true });
    expect(bad.body.errors?.[0]?.message).toContain('search by an email address');
  });

  it('fieldLineage puts both live values next to the agreed value, its origin and the activity that wrote it', async () => {
    reads.length = 0;
    const res = await gql(app(), LINEAGE, { q: '1001' });
    const [person] = res.body.data.findPeople;
    expect(reads).toHaveLength(1); // one live read per person, however many fields
    expect(person.liveErrors).toEqual([]);
    const field = (name: string) => person.fieldLineage.find((f: any) => f.field === name);
    expect(field('firstName')).toMatchObject({
      marketoValue: 'Ada',
      dynamicsValue: 'Ada',
      agreedValue: 'Ada',
      inAgreement: true,
      lastSetBy: 'DYNAMICS',
      state: 'SYNCED',
      lastChange: { type: 'UPDATED_IN_DYNAMICS' },
    });
    expect(field('title')).toMatchObject({
      marketoValue: 'VP Sales',
      dynamicsValue: 'Chief of Sales',
      agreedValue: 'VP Sales',
      inAgreement: false,
      lastSetBy: 'MARKETO',
      lastChange: { id: seeded.collision.id.toString(), type: 'COLLISION_RESOLVED' },
    });
    expect(field('company')).toMatchObject({ state: 'NOT_READABLE', reason: expect.stringContaining('may not read companyname') });
  });

  it('fieldLineage says why a field does not sync and shows a side that could not be read', async () => {
    const res = await gql(app(), LINEAGE, { q: CONTACT_ID });
    const [person] = res.body.data.findPeople;
    expect(person.liveErrors).toEqual(['Dynamics: 503 Service Unavailable']);
    const phone = person.fieldLineage.find((f: any) => f.field === 'phone');
    expect(phone).toMatchObject({ state: 'REFUSED_BY_DYNAMICS', heldBackValue: 'not a phone', liveRead: false, inAgreement: null });
    expect(phone.reason).toContain('telephone1: invalid format');
    const filtered = await gql(app(), LINEAGE, { q: '1003' });
    expect(filtered.body.data.findPeople[0].fieldLineage.every((f: any) => f.state === 'FILTERED')).toBe(true);
  });

  it('throughput counts completed events per minute by direction, with webhook latency percentiles from the tallies written as events complete', async () => {
    // one Marketo webhook completed 7 hours ago (outside the window): completed now, then its
    // tally moved back, as the clock would have written it
    const { id: old } = await enqueue(db.prisma, { source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: 4999, payload: {}, dedupeKey: 'tp:old' });
    await completeEvent(db.prisma, old, 1);
    await db.prisma.$executeRaw`UPDATE throughput_minute SET minute = minute - interval '7 hours' WHERE source = 'MARKETO'`;
    // four Dynamics webhooks done 1, 2, 3 and 4 s after they arrived; one Marketo webhook in 10 s;
    // a sweep event (counted, but not a webhook: no latency)
    const done = [
      ['DYNAMICS', 'WEBHOOK', 1],
      ['DYNAMICS', 'WEBHOOK', 2],
      ['DYNAMICS', 'WEBHOOK', 3],
      ['DYNAMICS', 'WEBHOOK', 4],
      ['MARKETO', 'WEBHOOK', 10],
      ['OPERATOR', 'SWEEP', 60],
    ] as const;
    let i = 0;
    for (const [source, origin, seconds] of done) {
      const { id } = await enqueue(db.prisma, { source, origin, operation: 'UPDATE', marketoId: 5000 + i, payload: {}, dedupeKey: `tp:${i++}` });
      await completeEvent(db.prisma, id, seconds);
    }
    const res = await gql(app(), '{ throughput(hours: 6) { hours perMinute { minute marketoToDynamics dynamicsToMarketo operator } latency { source events p50Seconds p99Seconds } } }');
    const t = res.body.data.throughput;
    const totals = t.perMinute.reduce(
      (sum: any, p: any) => ({ m: sum.m + p.marketoToDynamics, d: sum.d + p.dynamicsToMarketo, o: sum.o + p.operator }),
      { m: 0, d: 0, o: 0 },
    );
    // the seed's own DONE event (Dynamics, completed now) counts too
    expect(totals).toEqual({ m: 1, d: 5, o: 1 });
    const dynamics = t.latency.find((l: any) => l.source === 'DYNAMICS');
    const marketo = t.latency.find((l: any) => l.source === 'MARKETO');
    // percentiles come from 10% buckets: within 10% of the exact value
    expect(marketo.events).toBe(1);
    for (const p of [marketo.p50Seconds, marketo.p99Seconds]) expect(Math.abs(p - 10) / 10).toBeLessThanOrEqual(0.1);
    expect(dynamics.events).toBe(5);
    expect(Math.abs(dynamics.p99Seconds - 4) / 4).toBeLessThanOrEqual(0.1);
    expect(dynamics.p50Seconds).toBeGreaterThanOrEqual(1.8);
    expect(dynamics.p50Seconds).toBeLessThanOrEqual(2.2);
    const bad = await gql(app(), '{ throughput(hours: 0) { hours } }', {}, { expectErrors: true });
    expect(bad.body.errors?.[0]?.message).toContain('hours must be from 1 to 48');
  });

  it('backlogBySource gives each group its oldest waiting age; a group with only dead events waits for nobody', async () => {
    const res = await gql(app(), '{ syncStatus { backlogBySource { source entity pending failed dead oldestPendingAgeSeconds } } }');
    const groups = res.body.data.syncStatus.backlogBySource;
    const marketo = groups.find((g: any) => g.source === 'MARKETO' && g.entity === null);
    expect(marketo).toMatchObject({ pending: 1, dead: 1 });
    expect(marketo.oldestPendingAgeSeconds).toBeGreaterThanOrEqual(0);
    const contact = groups.find((g: any) => g.source === 'DYNAMICS' && g.entity === 'CONTACT');
    expect(contact).toMatchObject({ failed: 1 });
    expect(contact.oldestPendingAgeSeconds).not.toBeNull();
  });

  it('changeEvents narrows by source and entity, and replayChangeEvents replays only the dead events matching them', async () => {
    const { id: other } = await enqueue(db.prisma, { source: 'DYNAMICS', origin: 'WEBHOOK', operation: 'UPDATE', dynamicsEntity: 'LEAD', dynamicsId: LEAD_ID, payload: {}, dedupeKey: 'dead:dynamics' });
    await db.prisma.changeEvent.update({ where: { id: other }, data: { status: 'DEAD', lastError: 'gone' } });
    const listed = await gql(app(), '{ changeEvents(status: [DEAD], source: DYNAMICS, entity: LEAD) { edges { node { id } } } }');
    expect(listed.body.data.changeEvents.edges.map((e: any) => e.node.id)).toEqual([other]);

    const replay = await gql(app(), 'mutation { replayChangeEvents(allDead: true, source: MARKETO) { ok replayed skipped } }');
    expect(replay.body.data.replayChangeEvents).toEqual({ ok: true, replayed: [seeded.events['DEAD']], skipped: [] });
    expect((await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: other } })).status).toBe('DEAD');
  });

  it('syncRuns give each sweep its duration, the changes it found and the API calls it made', async () => {
    await db.prisma.syncRun.create({
      data: {
        trigger: 'OPERATOR',
        status: 'SUCCEEDED',
        owner: 'replica-a',
        startedAt: new Date(Date.now() - 4_000),
        finishedAt: new Date(Date.now() - 1_500),
        counts: { marketoChanges: 3, dynamicsChanges: 4, dynamicsDeletes: 1, marketoCalls: 5, dynamicsCalls: 6, eventsEnqueued: 8 },
      },
    });
    const res = await gql(app(), '{ syncRuns(first: 1) { edges { node { trigger durationSeconds changesFound apiCalls } } } }');
    expect(res.body.data.syncRuns.edges[0].node).toEqual({ trigger: 'OPERATOR', durationSeconds: 2.5, changesFound: 8, apiCalls: 11 });
  });

  it('limits the live vendor reads of each token: past the limit fieldLineage says so and reads nothing, checkNow is refused', async () => {
    let clock = Date.UTC(2026, 11, 5, 12, 0, 0);
    const vendorReads = createRateLimiter(db.prisma, { limit: 2, windowMs: 60_000, now: () => clock });
    const refreshed: string[] = [];
    const limited = app({ vendorReads, live: { ...live, refreshFieldAccess: (entity: string) => Promise.resolve(void refreshed.push(entity)) } });
    const lineage = (token: string) => gql(limited, '{ findPeople(query: "1001") { liveErrors fieldLineage { field marketoValue } } }', {}, { token });
    const before = reads.length;
    for (let i = 0; i < 2; i += 1) expect((await lineage(READ_TOKEN)).body.data.findPeople[0].liveErrors).toEqual([]);
    expect(reads.length - before).toBe(2);
    const refused = await lineage(READ_TOKEN);
    expect(refused.body.data.findPeople[0].liveErrors[0]).toMatch(/VENDOR_READS_PER_TOKEN_PER_MIN/);
    expect(reads.length - before).toBe(2);
    const check = await gql(limited, '{ fieldMappings(entity: LEAD, checkNow: true) { canonicalField } }', {}, { token: READ_TOKEN, expectErrors: true });
    expect(check.body.errors?.[0]?.extensions?.['code']).toBe('RATE_LIMITED');
    expect(refreshed).toEqual([]);
    // another token has its own allowance, and the next minute a new one
    expect((await lineage(TOKEN)).body.data.findPeople[0].liveErrors).toEqual([]);
    clock += 60_000;
    expect((await lineage(READ_TOKEN)).body.data.findPeople[0].liveErrors).toEqual([]);
  });

  it("fieldMappings shows a back-fill's progress through the entity's links, and checkNow reads the metadata first", async () => {
    const refreshed: string[] = [];
    const { actions } = fakeActions();
    const checking = app({ actions, live: { ...live, refreshFieldAccess: (entity: string) => Promise.resolve(void refreshed.push(entity)) } });
    await db.prisma.fieldMapping.update({
      where: { entity_canonicalField: { entity: 'CONTACT', canonicalField: 'city' } },
      data: { backfillRequestedAt: new Date() },
    });
    const waiting = await gql(checking, '{ fieldMappings(entity: CONTACT, checkNow: true) { canonicalField backfill { running linksDone linksTotal } } }');
    expect(refreshed).toEqual(['CONTACT']);
    expect(waiting.body.data.fieldMappings.find((m: any) => m.canonicalField === 'city').backfill).toEqual({ running: false, linksDone: 0, linksTotal: 2 });

    // the sweep has reconciled up to the first contact link (keyset position = its id)
    const [first] = await db.prisma.syncLink.findMany({ where: { dynamicsEntity: 'CONTACT' }, orderBy: { id: 'asc' }, take: 1 });
    await db.prisma.syncCursor.create({ data: { system: 'DYNAMICS', scope: fullScope('CONTACT'), token: first!.id, watermark: new Date() } });
    const running = await gql(checking, '{ fieldMappings(entity: CONTACT) { canonicalField backfill { running linksDone linksTotal } } }');
    const progress = running.body.data.fieldMappings.find((m: any) => m.canonicalField === 'city').backfill;
    expect(progress).toEqual({ running: true, linksDone: 1, linksTotal: 2 });
    expect(running.body.data.fieldMappings.find((m: any) => m.canonicalField === 'email').backfill).toBeNull();
  });
});
