/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-return -- GraphQL answers are checked by assertions, not by types */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLClient, gql as tag } from 'graphql-request';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { enqueue } from '../../src/inbox/inbox.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';
import { CONTACT_ID, gql, graphqlApp, LEAD_ID, seed, testDeps, TOKEN } from './support.ts';

const PERSON_VIEW = /* GraphQL */ `
  query Person($marketoId: ID) {
    link(marketoId: $marketoId) {
      marketoId
      dynamicsEntity
      dynamicsId
      status
      lastSyncedAt
      fields { field value origin { side at } blocked { side value reason message } }
      activities(first: 10) {
        edges { cursor node { type occurredAt message fields { field oldValue newValue side losingValue baseValue winner rule marketoValue dynamicsValue } } }
        pageInfo { hasNextPage endCursor }
      }
      openChangeEvents { status reason attempts }
    }
  }
`;

describe.each(testEngines())('GraphQL queries on %s', (engine) => {
  let db: Database;
  let seeded: Awaited<ReturnType<typeof seed>>;
  const app = () => graphqlApp(testDeps(db.prisma));

  useMigratedDatabase(engine, { opened: (opened) => (db = opened) });
  beforeAll(async () => {
    seeded = await seed(db.prisma);
  });

  it("answers a person's collision in one query: both values, the base, the winner and the rule, with each snapshot value's origin", async () => {
    const { body } = await gql(app(), PERSON_VIEW, { marketoId: '1001' });
    const link = body.data.link;
    expect(link).toMatchObject({ marketoId: '1001', dynamicsEntity: 'LEAD', dynamicsId: LEAD_ID, status: 'ACTIVE' });
    expect(link.lastSyncedAt).toBe(seeded.lead.lastSyncedAt?.toISOString());
    expect(link.fields).toContainEqual({ field: 'title', value: 'VP Sales', origin: { side: 'MARKETO', at: expect.any(String) }, blocked: null });
    expect(link.fields).toContainEqual({ field: 'firstName', value: 'Ada', origin: { side: 'DYNAMICS', at: expect.any(String) }, blocked: null });
    const types = link.activities.edges.map((e: any) => e.node.type);
    expect(types).toEqual(['COLLISION_RESOLVED', 'UPDATED_IN_DYNAMICS', 'LINKED']);
    expect(link.activities.edges[0].node.fields).toEqual([
      {
        field: 'title',
        oldValue: 'Director',
        newValue: 'VP Sales',
        side: 'DYNAMICS',
        losingValue: 'Director',
        baseValue: 'Manager',
        winner: 'MARKETO',
        rule: 'LEAD_MARKETO_WINS',
        marketoValue: 'VP Sales',
        dynamicsValue: 'Director',
      },
    ]);
    // events about the person or its Dynamics record that are not done yet
    expect(link.openChangeEvents).toEqual([
      { status: 'PROCESSING', reason: null, attempts: 1 },
      { status: 'PENDING', reason: null, attempts: 0 },
    ]);
  });

  it('finds a link by its Dynamics id, answers null when there is none, and refuses a malformed id with a readable error', async () => {
    const byDynamics = await gql(app(), `{ link(dynamicsId: "${CONTACT_ID.toUpperCase()}") { marketoId fields { field blocked { side value reason message } } } }`);
    expect(byDynamics.body.data.link.marketoId).toBe('1002');
    expect(byDynamics.body.data.link.fields).toContainEqual({
      field: 'phone',
      blocked: { side: 'DYNAMICS', value: 'not a phone', reason: 'VALIDATION', message: 'telephone1: invalid format' },
    });
    const none = await gql(app(), '{ link(marketoId: "999") { marketoId } }');
    expect(none.body.data.link).toBeNull();
    const bad = await gql(app(), '{ link(dynamicsId: "nope") { marketoId } }', {}, { expectErrors: true });
    expect(bad.body.errors?.[0]?.message).toContain('dynamicsId must be a GUID');
  });

  it('lists links newest first and filters them by status, entity, update time and failures', async () => {
    const q = `query($filter: LinkFilter) { links(filter: $filter) { edges { node { marketoId } } pageInfo { hasNextPage } } }`;
    const ids = async (filter: unknown) => (await gql(app(), q, { filter })).body.data.links.edges.map((e: any) => e.node.marketoId);
    expect(await ids(null)).toEqual(['1003', '1002', '1001']);
    expect(await ids({ status: ['FILTERED'] })).toEqual(['1003']);
    expect(await ids({ entity: 'CONTACT' })).toEqual(['1003', '1002']);
    expect(await ids({ updatedSince: new Date(Date.now() + 60_000).toISOString() })).toEqual([]);
    // 1002 has a DEAD and a FAILED event and a value Dynamics refused; the others have none
    expect(await ids({ hasFailures: true })).toEqual(['1002']);
    expect(await ids({ hasFailures: false })).toEqual(['1003', '1001']);
  });

  it('filters activities by person, Dynamics record, type and time range, newest first', async () => {
    const q = `query($m: ID, $d: ID, $types: [ActivityType!], $since: DateTime, $until: DateTime) {
      activities(marketoId: $m, dynamicsId: $d, types: $types, since: $since, until: $until) {
        edges { node { id type marketoId dynamicsEntity dynamicsId message link { marketoId } } }
      }
    }`;
    const types = async (vars: Record<string, unknown>) => (await gql(app(), q, vars)).body.data.activities.edges.map((e: any) => e.node.type);
    expect(await types({})).toEqual(['VALIDATION_REJECTED', 'COLLISION_RESOLVED', 'UPDATED_IN_DYNAMICS', 'LINKED']);
    expect(await types({ m: '1001' })).toEqual(['COLLISION_RESOLVED', 'UPDATED_IN_DYNAMICS', 'LINKED']);
    expect(await types({ d: CONTACT_ID })).toEqual(['VALIDATION_REJECTED']);
    expect(await types({ types: ['LINKED', 'VALIDATION_REJECTED'] })).toEqual(['VALIDATION_REJECTED', 'LINKED']);
    const collisionAt = seeded.collision.occurredAt.getTime();
    expect(await types({ since: new Date(collisionAt).toISOString(), until: new Date(collisionAt + 1).toISOString() })).toEqual(['COLLISION_RESOLVED']);
    const rejected = (await gql(app(), q, { types: ['VALIDATION_REJECTED'] })).body.data.activities.edges[0].node;
    expect(rejected).toMatchObject({ marketoId: '1002', dynamicsEntity: 'CONTACT', message: 'telephone1: invalid format', link: { marketoId: '1002' } });
  });

  it('lists collisions with both values, the base, the winner, the rule and the time', async () => {
    const { body } = await gql(
      app(),
      `{ collisions { edges { node { id occurredAt field marketoValue dynamicsValue baseValue winner rule keptValue losingValue overwrittenSide link { dynamicsEntity } } } } }`,
    );
    expect(body.data.collisions.edges).toEqual([
      {
        node: {
          id: seeded.collision.id.toString(),
          occurredAt: seeded.collision.occurredAt.toISOString(),
          field: 'title',
          marketoValue: 'VP Sales',
          dynamicsValue: 'Director',
          baseValue: 'Manager',
          winner: 'MARKETO',
          rule: 'LEAD_MARKETO_WINS',
          keptValue: 'VP Sales',
          losingValue: 'Director',
          overwrittenSide: 'DYNAMICS',
          link: { dynamicsEntity: 'LEAD' },
        },
      },
    ]);
    const later = await gql(app(), `{ collisions(since: "${new Date(Date.now() + 1000).toISOString()}") { edges { node { id } } } }`);
    expect(later.body.data.collisions.edges).toEqual([]);
  });

  it('lists change events by status with their reason and attempts', async () => {
    const q = `query($status: [ChangeEventStatus!]) { changeEvents(status: $status) { edges { node { id status reason attempts source dynamicsEntity payload link { marketoId } } } } }`;
    const nodes = async (status: string[] | null) => (await gql(app(), q, { status })).body.data.changeEvents.edges.map((e: any) => e.node);
    expect((await nodes(null)).map((n: any) => n.status)).toEqual(['DONE', 'DEAD', 'FAILED', 'PROCESSING', 'PENDING']);
    expect(await nodes(['FAILED', 'DEAD'])).toEqual([
      { id: seeded.events.DEAD, status: 'DEAD', reason: 'Marketo answered 1003: invalid field', attempts: 8, source: 'MARKETO', dynamicsEntity: null, payload: { hint: 'DEAD' }, link: { marketoId: '1002' } },
      { id: seeded.events.FAILED, status: 'FAILED', reason: 'Dynamics answered 429 (rate_limited)', attempts: 2, source: 'DYNAMICS', dynamicsEntity: 'CONTACT', payload: { hint: 'FAILED' }, link: { marketoId: '1002' } },
    ]);
    for (const status of ['PENDING', 'PROCESSING', 'DONE']) expect((await nodes([status])).map((n: any) => n.status)).toEqual([status]);
  });

  it('lists sweeps newest first with status, trigger, times, counts, notes and error', async () => {
    const { body } = await gql(app(), `{ syncRuns(first: 2) { edges { node { status trigger startedAt finishedAt counts { name value } notes error } } pageInfo { hasNextPage endCursor } } }`);
    const [running, failed] = body.data.syncRuns.edges.map((e: any) => e.node);
    expect(running).toMatchObject({ status: 'RUNNING', trigger: 'SCHEDULE', finishedAt: null, error: null });
    expect(failed).toMatchObject({ status: 'FAILED', notes: ['marketo 606 storm'], error: 'Marketo rate limit (606) did not clear' });
    expect(failed.counts).toEqual(expect.arrayContaining([{ name: 'scanned', value: 15 }, { name: 'updated', value: 2 }]));
    expect(body.data.syncRuns.pageInfo.hasNextPage).toBe(true);
    const next = await gql(app(), `query($after: String) { syncRuns(first: 2, after: $after) { edges { node { status } } pageInfo { hasNextPage } } }`, {
      after: body.data.syncRuns.pageInfo.endCursor,
    });
    expect(next.body.data.syncRuns).toEqual({ edges: [{ node: { status: 'SUCCEEDED' } }], pageInfo: { hasNextPage: false } });
  });

  it('shows field mappings with the sync user\'s access on each Dynamics column and the Marketo field\'s updateability', async () => {
    await db.prisma.fieldMapping.update({
      where: { entity_canonicalField: { entity: 'LEAD', canonicalField: 'email' } },
      data: {
        access: { dynamics: { exists: true, canRead: true, canUpdate: false, canCreate: true }, marketo: { exists: true, updateable: true, dataType: 'email' } },
        accessCheckedAt: new Date(),
      },
    });
    const { body } = await gql(
      app(),
      `{ fieldMappings(entity: LEAD) { entity canonicalField marketoField dynamicsAttribute direction enabled effectiveWinner effectiveRule access { dynamics { canRead canUpdate } marketo { updateable dataType } } } }`,
    );
    expect(body.data.fieldMappings).toHaveLength(17);
    expect(body.data.fieldMappings.find((m: any) => m.canonicalField === 'email')).toEqual({
      entity: 'LEAD',
      canonicalField: 'email',
      marketoField: 'email',
      dynamicsAttribute: 'emailaddress1',
      direction: 'BOTH',
      enabled: true,
      effectiveWinner: 'MARKETO',
      effectiveRule: 'LEAD_MARKETO_WINS',
      access: { dynamics: { canRead: true, canUpdate: false }, marketo: { updateable: true, dataType: 'email' } },
    });
    expect(body.data.fieldMappings.find((m: any) => m.canonicalField === 'city').access).toBeNull();
    const all = await gql(app(), '{ fieldMappings { entity } }');
    expect(all.body.data.fieldMappings).toHaveLength(45);
  });

  it('reports sync status: backlog per status and per side, oldest pending age, last-hour throughput, last sweep, API usage and connector health', async () => {
    const { body } = await gql(
      app(),
      `{ syncStatus {
          backlog { pending processing failed dead }
          oldestPendingAgeSeconds
          backlogBySource { source entity pending processing failed dead }
          lastHourThroughput
          lastSweep { status }
          apiUsage { marketo { callsToday dailyQuota remaining } dynamics { calls } }
          connectors { name ok mode detail }
      } }`,
    );
    const status = body.data.syncStatus;
    expect(status.backlog).toEqual({ pending: 1, processing: 1, failed: 1, dead: 1 });
    expect(status.oldestPendingAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(status.backlogBySource).toEqual([
      { source: 'DYNAMICS', entity: 'CONTACT', pending: 0, processing: 0, failed: 1, dead: 0 },
      { source: 'DYNAMICS', entity: 'LEAD', pending: 0, processing: 1, failed: 0, dead: 0 },
      { source: 'MARKETO', entity: null, pending: 1, processing: 0, failed: 0, dead: 1 },
    ]);
    expect(status.lastHourThroughput).toBe(1);
    expect(status.lastSweep).toEqual({ status: 'RUNNING' });
    expect(status.apiUsage).toEqual({ marketo: { callsToday: 1200, dailyQuota: 50_000, remaining: 48_800 }, dynamics: { calls: 321 } });
    expect(status.connectors).toEqual([
      { name: 'dynamics', ok: false, mode: 'sandbox', detail: '429 storm' },
      { name: 'marketo', ok: true, mode: 'sandbox', detail: null },
    ]);
  });

  it('keeps pages stable when new activities and events arrive between pages: nothing repeats, nothing is skipped', async () => {
    const subject = { linkId: seeded.filtered.id, marketoId: 1003, dynamicsEntity: 'CONTACT' as const, dynamicsId: seeded.filtered.dynamicsId };
    for (let i = 0; i < 5; i++) await db.prisma.activity.create({ data: { ...subject, type: 'SYNC_FILTERED', message: `old ${i}` } });
    const q = `query($after: String) { activities(marketoId: "1003", first: 2, after: $after) { edges { node { message } } pageInfo { hasNextPage endCursor } } }`;
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 10; page++) {
      const res: any = (await gql(app(), q, { after })).body.data.activities;
      seen.push(...res.edges.map((e: any) => e.node.message));
      await db.prisma.activity.create({ data: { ...subject, type: 'SYNC_FILTERED', message: `new ${page}` } });
      if (!res.pageInfo.hasNextPage) break;
      after = res.pageInfo.endCursor;
    }
    expect(seen).toEqual(['old 4', 'old 3', 'old 2', 'old 1', 'old 0']);

    // the same through a link's nested log
    const nested = `query($after: String) { link(marketoId: "1003") { activities(first: 3, after: $after, types: [SYNC_FILTERED]) { edges { node { message } } pageInfo { hasNextPage endCursor } } } }`;
    const first = (await gql(app(), nested)).body.data.link.activities;
    await db.prisma.activity.create({ data: { ...subject, type: 'SYNC_FILTERED', message: 'newest' } });
    const second = (await gql(app(), nested, { after: first.pageInfo.endCursor })).body.data.link.activities;
    const firstMessages = first.edges.map((e: any) => e.node.message);
    const secondMessages = second.edges.map((e: any) => e.node.message);
    expect(secondMessages).not.toContain('newest');
    expect(firstMessages.filter((m: string) => secondMessages.includes(m))).toEqual([]);

    // change events: received-time order with microseconds, paged by id
    const eq = `query($after: String) { changeEvents(first: 2, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }`;
    const before = (await db.prisma.changeEvent.findMany({ orderBy: [{ receivedAt: 'desc' }, { id: 'desc' }], select: { id: true } })).map((e) => e.id);
    const pagedIds: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const res: any = (await gql(app(), eq, { after: cursor })).body.data.changeEvents;
      pagedIds.push(...res.edges.map((e: any) => e.node.id));
      await enqueue(db.prisma, { source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: 1003, dedupeKey: `page:${page}` });
      if (!res.pageInfo.hasNextPage) break;
      cursor = res.pageInfo.endCursor;
    }
    expect(pagedIds).toEqual(before);
  });

  it('loads nested links, logs and open events in batches, not one query per row', async () => {
    let calls = 0;
    // counts every Prisma operation the API makes (model methods and raw queries)
    const counting = new Proxy(db.prisma, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop === '$queryRaw') return (...args: unknown[]) => ((calls += 1), (value as (...a: unknown[]) => unknown).apply(target, args));
        if (typeof prop === 'string' && ['syncLink', 'activity', 'changeEvent'].includes(prop)) {
          return new Proxy(value as object, {
            get: (delegate, method, r) => {
              const fn = Reflect.get(delegate, method, r);
              return typeof fn === 'function' ? (...args: unknown[]) => ((calls += 1), fn.apply(delegate, args)) : fn;
            },
          });
        }
        return value;
      },
    });
    const query = `{ links { edges { node { marketoId openChangeEvents { id link { marketoId } } activities(first: 5) { edges { node { type link { marketoId } } } } } } } }`;
    const res = await gql(graphqlApp(testDeps(counting)), query);
    expect(res.body.data.links.edges).toHaveLength(3);
    // links page (1) + activities per link (lateral + rows: 2) + open events (lateral + rows: 2) + links of those (<= 3 loaders)
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(calls).toBeLessThanOrEqual(8);
  });

  it('refuses a cursor from another list or a forged one with a readable error', async () => {
    const runs = (await gql(app(), '{ syncRuns(first: 1) { pageInfo { endCursor } } }')).body.data.syncRuns.pageInfo.endCursor;
    const res = await gql(app(), `query($after: String) { activities(after: $after) { edges { cursor } } }`, { after: runs }, { expectErrors: true });
    expect(res.body.errors?.[0]?.message).toContain('invalid cursor');
    const forged = await gql(app(), `{ changeEvents(after: "not-a-cursor") { edges { cursor } } }`, {}, { expectErrors: true });
    expect(forged.body.errors?.[0]?.message).toContain('invalid cursor');
    const tooMany = await gql(app(), `{ activities(first: 101) { edges { cursor } } }`, {}, { expectErrors: true });
    expect(tooMany.body.errors?.[0]?.message).toContain('first must be between 1 and 100');
  });

  it('serves a real GraphQL client (graphql-request) on a listening server', async () => {
    const server: Server = await new Promise((resolve) => {
      const s = graphqlApp(testDeps(db.prisma)).listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const { port } = server.address() as AddressInfo;
      const client = new GraphQLClient(`http://127.0.0.1:${port}/graphql`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const data = await client.request<{ link: { dynamicsEntity: string; activities: { edges: { node: { type: string; fields: { winner: string | null }[] } }[] } } }>(
        tag`query Person($id: ID) { link(marketoId: $id) { dynamicsEntity activities(types: [COLLISION_RESOLVED]) { edges { node { type fields { winner rule baseValue losingValue } } } } } }`,
        { id: '1001' },
      );
      expect(data.link.dynamicsEntity).toBe('LEAD');
      expect(data.link.activities.edges[0]?.node.fields[0]).toEqual({ winner: 'MARKETO', rule: 'LEAD_MARKETO_WINS', baseValue: 'Manager', losingValue: 'Director' });
      const mutation = await client.request<{ requestPersonSync: { ok: boolean; eventId: string } }>(tag`mutation { requestPersonSync(marketoId: "1001") { ok eventId } }`);
      expect(mutation.requestPersonSync.ok).toBe(true);
      const anonymous = new GraphQLClient(`http://127.0.0.1:${port}/graphql`);
      await expect(anonymous.request(tag`{ syncStatus { lastHourThroughput } }`)).rejects.toMatchObject({ response: { status: 401 } });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
