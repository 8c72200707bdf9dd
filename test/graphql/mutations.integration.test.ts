import express from 'express';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { createGraphQLHandler } from '../../src/graphql/handler.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';
import { fakeActions, gql, graphqlApp, seed, testDeps, TOKEN } from './support.ts';

describe.each(testEngines())('GraphQL mutations, auth and limits on %s', (engine) => {
  let db: Database;
  let seeded: Awaited<ReturnType<typeof seed>>;

  useMigratedDatabase(engine, { opened: (opened) => (db = opened) });
  beforeAll(async () => {
    seeded = await seed(db.prisma);
  });

  const setup = (overrides: Parameters<typeof fakeActions>[0] = {}) => {
    const fake = fakeActions(overrides);
    return { ...fake, app: graphqlApp(testDeps(db.prisma, { actions: fake.actions })) };
  };

  it('refuses a request without a token or with a wrong one with 401 and executes nothing', async () => {
    const { app, calls } = setup();
    const mutation = 'mutation { requestSweep { ok } }';
    for (const token of [null, 'wrong-token', `${TOKEN}x`, '']) {
      const res = await gql(app, mutation, {}, { token, expectErrors: true });
      expect(res.status).toBe(401);
      expect(res.body.data).toBeUndefined();
      expect(res.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    }
    const basic = await request(app).post('/graphql').set('authorization', `Basic ${TOKEN}`).send({ query: mutation });
    expect(basic.status).toBe(401);
    expect(calls.requestSweep).toBe(0);
    const ok = await gql(app, mutation);
    expect(ok.body.data.requestSweep.ok).toBe(true);
    expect(calls.requestSweep).toBe(1);
  });

  it('refuses a too-deep query before running any resolver', async () => {
    const { app, calls } = setup();
    const nested = (depth: number): string => (depth === 0 ? 'type' : `link { activities { edges { node { ${nested(depth - 1)} } } } }`);
    const deepMutation = `mutation($id: ID!) { resolveCollision(activityId: $id, keep: MARKETO) { collision { ${nested(2)} } } }`;
    const res = await gql(app, deepMutation, { id: seeded.collision.id.toString() }, { expectErrors: true });
    expect(res.body.data).toBeUndefined();
    expect(res.body.errors?.[0]?.message).toMatch(/depth limit of 10 exceeded/);
    expect(calls.resolveCollision).toEqual([]);
    const deepQuery = `{ link(marketoId: "1001") { activities { edges { node { ${nested(2)} } } } } }`;
    const single = await gql(app, deepQuery, {}, { expectErrors: true });
    expect(single.body.errors?.[0]?.message).toMatch(/depth limit of 10 exceeded/);
    // the person view itself is well inside the limits
    await gql(app, `{ link(marketoId: "1001") { activities { edges { node { ${nested(0)} fields { field winner } } } } } }`);
  });

  it('refuses too many aliases and too costly queries', async () => {
    const { app } = setup();
    const aliases = `{ ${Array.from({ length: 20 }, (_, i) => `a${i}: syncStatus { lastHourThroughput }`).join(' ')} }`;
    const res = await gql(app, aliases, {}, { expectErrors: true });
    expect(res.body.errors?.[0]?.message).toMatch(/Aliases limit/);
    const costly = `{ links(first: 100) { edges { node { activities(first: 100) { edges { node { fields { field oldValue newValue side } link { fields { field value } } } } } } } } }`;
    const cost = await gql(app, costly, {}, { expectErrors: true });
    expect(cost.body.errors?.[0]?.message).toMatch(/Cost limit/);
  });

  it('masks unexpected errors and keeps the ones meant for the caller', async () => {
    const { app } = setup({ requestSweep: () => Promise.reject(new Error('connection string postgresql://secret@db leaked')) });
    const res = await gql(app, 'mutation { requestSweep { ok } }', {}, { expectErrors: true });
    expect(res.body.errors?.[0]?.message).toBe('Unexpected error.');
    expect(JSON.stringify(res.body)).not.toContain('secret');
    const typo = await gql(app, '{ syncStatu { lastHourThroughput } }', {}, { expectErrors: true });
    expect(typo.body.errors?.[0]?.message).not.toMatch(/Did you mean/);
  });

  it('queues a person re-sync through the engine and answers with the event id', async () => {
    const { app, calls } = setup();
    const res = await gql(app, 'mutation { requestPersonSync(marketoId: "1001") { ok error eventId } }');
    expect(res.body.data.requestPersonSync).toEqual({ ok: true, error: null, eventId: '0191c1c2-0000-7000-8000-000000000001' });
    expect(calls.requestPersonSync).toEqual([1001]);
    const bad = await gql(app, 'mutation { requestPersonSync(marketoId: "abc") { ok error eventId } }');
    expect(bad.body.data.requestPersonSync).toMatchObject({ ok: false, eventId: null, error: expect.stringContaining('marketoId must be a positive integer') });
    expect(calls.requestPersonSync).toEqual([1001]);
  });

  it('requests a sweep, and says so when none was started', async () => {
    const started = setup();
    const res = await gql(started.app, 'mutation { requestSweep { ok error runId message } }');
    expect(res.body.data.requestSweep).toEqual({ ok: true, error: null, runId: '0191c1c2-0000-7000-8000-0000000000aa', message: 'sweep started' });
    const busy = setup({ requestSweep: () => Promise.resolve({ runId: null, message: 'a sweep is already running' }) });
    const refused = await gql(busy.app, 'mutation { requestSweep { ok error runId message } }');
    expect(refused.body.data.requestSweep).toEqual({ ok: false, error: 'a sweep is already running', runId: null, message: 'a sweep is already running' });
  });

  it('resolves a collision by keeping the chosen side, and refuses activities that are not collisions', async () => {
    const { app, calls } = setup();
    const id = seeded.collision.id.toString();
    const res = await gql(app, `mutation($id: ID!) { resolveCollision(activityId: $id, keep: DYNAMICS) { ok error collision { field losingValue } } }`, { id });
    expect(res.body.data.resolveCollision).toEqual({ ok: true, error: null, collision: { field: 'title', losingValue: 'Director' } });
    expect(calls.resolveCollision).toEqual([[id, 'DYNAMICS']]);
    const linked = await db.prisma.activity.findFirstOrThrow({ where: { type: 'LINKED' } });
    const notCollision = await gql(app, `mutation($id: ID!) { resolveCollision(activityId: $id, keep: MARKETO) { ok error } }`, { id: linked.id.toString() });
    expect(notCollision.body.data.resolveCollision).toEqual({ ok: false, error: `activity ${linked.id} is LINKED, not a collision` });
    const missing = await gql(app, `mutation { resolveCollision(activityId: "999999", keep: MARKETO) { ok error } }`);
    expect(missing.body.data.resolveCollision).toEqual({ ok: false, error: 'no activity 999999' });
    const engineRefusal = setup({ resolveCollision: () => Promise.resolve({ ok: false, error: 'the person no longer exists in Marketo' }) });
    const refused = await gql(engineRefusal.app, `mutation($id: ID!) { resolveCollision(activityId: $id, keep: MARKETO) { ok error } }`, { id });
    expect(refused.body.data.resolveCollision).toEqual({ ok: false, error: 'the person no longer exists in Marketo' });
    expect(calls.resolveCollision).toHaveLength(1);
  });

  it('replays a dead change event, and refuses events that are not dead', async () => {
    const { app } = setup();
    const q = `mutation($id: ID!) { replayChangeEvent(id: $id) { ok error replayed skipped } }`;
    const failed = await gql(app, q, { id: seeded.events.FAILED });
    expect(failed.body.data.replayChangeEvent).toEqual({
      ok: false,
      error: `change event ${seeded.events.FAILED} is FAILED; only DEAD events can be replayed`,
      replayed: [],
      skipped: [seeded.events.FAILED],
    });
    const dead = await gql(app, q, { id: seeded.events.DEAD });
    expect(dead.body.data.replayChangeEvent).toEqual({ ok: true, error: null, replayed: [seeded.events.DEAD], skipped: [] });
    const row = await db.prisma.changeEvent.findUniqueOrThrow({ where: { id: seeded.events.DEAD! } });
    expect(row).toMatchObject({ status: 'PENDING', attempts: 0, completedAt: null });
    const unknown = await gql(app, q, { id: '00000000-0000-4000-8000-000000000000' });
    expect(unknown.body.data.replayChangeEvent.error).toBe('no change event 00000000-0000-4000-8000-000000000000');
  });

  it('replays the given dead events or all of them', async () => {
    const { app } = setup();
    const dead = await Promise.all(
      [1, 2, 3].map((i) =>
        db.prisma.changeEvent.create({ data: { source: 'MARKETO', origin: 'WEBHOOK', operation: 'UPDATE', marketoId: 2000 + i, dedupeKey: `dead:${i}`, status: 'DEAD', attempts: 8, lastError: 'boom' } }),
      ),
    );
    const some = await gql(app, `mutation($ids: [ID!]) { replayChangeEvents(ids: $ids) { ok error replayed skipped } }`, { ids: [dead[0]!.id, seeded.events.DONE] });
    expect(some.body.data.replayChangeEvents).toMatchObject({ ok: false, replayed: [dead[0]!.id], skipped: [seeded.events.DONE] });
    const all = await gql(app, `mutation { replayChangeEvents(allDead: true) { ok error replayed skipped } }`);
    expect(all.body.data.replayChangeEvents).toEqual({ ok: true, error: null, replayed: expect.arrayContaining([dead[1]!.id, dead[2]!.id]), skipped: [] });
    expect(await db.prisma.changeEvent.count({ where: { status: 'DEAD' } })).toBe(0);
    const nothing = await gql(app, `mutation { replayChangeEvents { ok error } }`);
    expect(nothing.body.data.replayChangeEvents).toEqual({ ok: false, error: 'pass ids or allDead: true' });
  });

  it('adds a field mapping after validation, schedules its back-fill and records when', async () => {
    const { app, calls } = setup();
    const input = { entity: 'LEAD', canonicalField: 'industry', marketoField: 'industry', dynamicsAttribute: 'IndustryCode', valueMap: [{ dynamicsValue: '1', marketoValue: 'Accounting' }] };
    const res = await gql(
      app,
      `mutation($input: FieldMappingInput!) { upsertFieldMapping(input: $input) { ok error backfillScheduled fieldMapping { canonicalField dynamicsAttribute enabled direction backfillRequestedAt valueMap { dynamicsValue marketoValue } } } }`,
      { input },
    );
    const payload = res.body.data.upsertFieldMapping;
    expect(payload).toMatchObject({
      ok: true,
      error: null,
      backfillScheduled: true,
      fieldMapping: { canonicalField: 'industry', dynamicsAttribute: 'industrycode', enabled: true, direction: 'BOTH', valueMap: [{ dynamicsValue: '1', marketoValue: 'Accounting' }] },
    });
    expect(payload.fieldMapping.backfillRequestedAt).toEqual(expect.any(String));
    expect(calls.validateFieldMapping[0]).toMatchObject({ entity: 'LEAD', canonicalField: 'industry', dynamicsAttribute: 'industrycode', valueMap: { '1': 'Accounting' } });
    expect(calls.scheduleBackfill).toEqual([['LEAD', 'industry']]);
    expect(calls.fieldMappingChanged).toEqual(['LEAD']);

    // changing only the winner of an enabled field does not back-fill it again
    const again = await gql(app, `mutation($input: FieldMappingInput!) { upsertFieldMapping(input: $input) { ok backfillScheduled fieldMapping { collisionWinner effectiveRule } } }`, {
      input: { ...input, collisionWinner: 'DYNAMICS' },
    });
    expect(again.body.data.upsertFieldMapping).toEqual({ ok: true, backfillScheduled: false, fieldMapping: { collisionWinner: 'DYNAMICS', effectiveRule: 'FIELD_OVERRIDE' } });
    expect(calls.scheduleBackfill).toHaveLength(1);
  });

  it('refuses a field mapping the Dynamics sync user cannot read, one whose column is taken, and malformed names, storing nothing', async () => {
    const { app, calls } = setup();
    const q = `mutation($input: FieldMappingInput!) { upsertFieldMapping(input: $input) { ok error backfillScheduled fieldMapping { id } } }`;
    const unreadable = await gql(app, q, { input: { entity: 'LEAD', canonicalField: 'secret', marketoField: 'secret', dynamicsAttribute: 'new_secret' } });
    expect(unreadable.body.data.upsertFieldMapping).toEqual({
      ok: false,
      error: 'the Dynamics sync user cannot read lead.new_secret (field security)',
      backfillScheduled: false,
      fieldMapping: null,
    });
    const taken = await gql(app, q, { input: { entity: 'LEAD', canonicalField: 'email2', marketoField: 'email2', dynamicsAttribute: 'emailaddress1' } });
    expect(taken.body.data.upsertFieldMapping.error).toBe('LEAD column emailaddress1 is already mapped to email');
    const malformed = await gql(app, q, { input: { entity: 'LEAD', canonicalField: 'bad name', marketoField: 'x', dynamicsAttribute: 'x' } });
    expect(malformed.body.data.upsertFieldMapping.error).toMatch(/^canonicalField: /);
    expect(await db.prisma.fieldMapping.count({ where: { canonicalField: { in: ['secret', 'email2', 'bad name'] } } })).toBe(0);
    expect(calls.scheduleBackfill).toEqual([]);
  });

  it('disables a field mapping, and re-enabling it schedules a back-fill', async () => {
    const { app, calls } = setup();
    const disable = `mutation { disableFieldMapping(entity: CONTACT, canonicalField: "title") { ok error fieldMapping { enabled } } }`;
    expect((await gql(app, disable)).body.data.disableFieldMapping).toEqual({ ok: true, error: null, fieldMapping: { enabled: false } });
    expect(calls.validateFieldMapping.at(-1)).toMatchObject({ entity: 'CONTACT', canonicalField: 'title', enabled: false });
    expect((await gql(app, disable)).body.data.disableFieldMapping).toEqual({ ok: true, error: null, fieldMapping: { enabled: false } });
    const missing = await gql(app, `mutation { disableFieldMapping(entity: CONTACT, canonicalField: "nope") { ok error } }`);
    expect(missing.body.data.disableFieldMapping).toEqual({ ok: false, error: 'no CONTACT mapping for nope' });

    const enable = await gql(app, `mutation($input: FieldMappingInput!) { upsertFieldMapping(input: $input) { ok backfillScheduled fieldMapping { enabled backfillRequestedAt } } }`, {
      input: { entity: 'CONTACT', canonicalField: 'title', marketoField: 'title', dynamicsAttribute: 'jobtitle', enabled: true },
    });
    expect(enable.body.data.upsertFieldMapping).toMatchObject({ ok: true, backfillScheduled: true, fieldMapping: { enabled: true } });
    expect(calls.scheduleBackfill).toEqual([['CONTACT', 'title']]);

    const guarded = setup({ validateFieldMapping: (draft) => Promise.resolve(draft.canonicalField === 'email' ? { ok: false, reason: 'email matches persons; it cannot be disabled' } : { ok: true }) });
    const refused = await gql(guarded.app, `mutation { disableFieldMapping(entity: LEAD, canonicalField: "email") { ok error fieldMapping { enabled } } }`);
    expect(refused.body.data.disableFieldMapping).toEqual({ ok: false, error: 'email matches persons; it cannot be disabled', fieldMapping: { enabled: true } });
  });

  it('refuses an oversized body before GraphQL sees it, and works behind an outer JSON parser too', async () => {
    const { actions, calls } = fakeActions();
    const small = graphqlApp(testDeps(db.prisma, { actions, bodyLimitBytes: 1024 }));
    const huge = await request(small)
      .post('/graphql')
      .set('authorization', `Bearer ${TOKEN}`)
      .send({ query: `mutation { requestSweep { ok } } # ${'x'.repeat(4096)}` });
    expect(huge.status).toBe(413);
    expect(calls.requestSweep).toBe(0);
    const outer = express();
    outer.use(express.json());
    outer.use('/graphql', createGraphQLHandler(testDeps(db.prisma, { actions })).middleware);
    const res = await gql(outer, 'mutation { requestSweep { ok } }');
    expect(res.body.data.requestSweep.ok).toBe(true);
  });

  it('serves GraphiQL to a browser only when enabled', async () => {
    const on = graphqlApp(testDeps(db.prisma, { graphiql: true }));
    const page = await request(on).get('/graphql').set('accept', 'text/html');
    expect(page.status).toBe(200);
    expect(page.text).toContain('marketo-dynamics-sync');
    expect(page.text).not.toContain(TOKEN);
    const off = graphqlApp(testDeps(db.prisma, { graphiql: false }));
    const refused = await request(off).get('/graphql').set('accept', 'text/html');
    expect(refused.status).toBe(401);
  });
});
