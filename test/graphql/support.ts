/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are checked by assertions, not by types */
import express, { type Express } from 'express';
import { pino } from 'pino';
import request from 'supertest';
import type { PrismaClient } from '../../src/db/generated/client.ts';
import type { FieldMappingDraft, GraphQLDeps, SyncActions } from '../../src/graphql/context.ts';
import { createGraphQLHandler } from '../../src/graphql/handler.ts';
import { createSuppressions } from '../../src/security/suppression.ts';
import { createApiTokens, ensureConfiguredToken, hashSecret, type ApiTokenService } from '../../src/auth/tokens.ts';
import { enqueue } from '../../src/inbox/inbox.ts';
import { completeEvent } from '../support/inbox.ts';

export const TOKEN = 'test-token-0123456789';
/** a token of the read scope, made next to TOKEN (admin) in every testDeps database */
export const READ_TOKEN = 'test-read-token-0123456789';
/** a token of the operate scope: everything but tokens and erasure */
export const OPERATE_TOKEN = 'test-operate-token-0123456789';

/** The real token repository, with TOKEN (admin, "env"), OPERATE_TOKEN ("operator") and READ_TOKEN (read, "reader") stored on first use. */
export function testTokens(prisma: PrismaClient): ApiTokenService {
  const tokens = createApiTokens(prisma);
  let ready: Promise<void> | undefined;
  const seedTokens = async () => {
    await ensureConfiguredToken(prisma, TOKEN);
    await prisma.apiToken.createMany({
      data: [
        { name: 'reader', scope: 'READ', secretHash: hashSecret(READ_TOKEN) },
        { name: 'operator', scope: 'OPERATE', secretHash: hashSecret(OPERATE_TOKEN) },
      ],
      skipDuplicates: true,
    });
  };
  return {
    ...tokens,
    async authenticate(secret) {
      await (ready ??= seedTokens());
      return tokens.authenticate(secret);
    },
  };
}
export const silent = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** Simple stand-ins for the engine and the sweep; every call is recorded. */
export function fakeActions(overrides: Partial<SyncActions> = {}) {
  const calls = {
    requestPersonSync: [] as number[],
    requestSweep: 0,
    resolveCollision: [] as [string, string][],
    validateFieldMapping: [] as FieldMappingDraft[],
    scheduleBackfill: [] as [string, string][],
    fieldMappingChanged: [] as string[],
  };
  const actions: SyncActions = {
    requestPersonSync: (marketoId) => {
      calls.requestPersonSync.push(marketoId);
      return Promise.resolve({ eventId: '0191c1c2-0000-7000-8000-000000000001' });
    },
    requestSweep: () => {
      calls.requestSweep += 1;
      return Promise.resolve({ runId: '0191c1c2-0000-7000-8000-0000000000aa', message: 'sweep started' });
    },
    resolveCollision: (activityId, keep) => {
      calls.resolveCollision.push([activityId, keep]);
      return Promise.resolve({ ok: true });
    },
    validateFieldMapping: (draft) => {
      calls.validateFieldMapping.push(draft);
      return Promise.resolve(
        draft.dynamicsAttribute === 'new_secret'
          ? { ok: false as const, reason: 'the Dynamics sync user cannot read lead.new_secret (field security)' }
          : { ok: true as const },
      );
    },
    scheduleBackfill: (entity, field) => {
      calls.scheduleBackfill.push([entity, field]);
      return Promise.resolve();
    },
    fieldMappingChanged: (entity) => {
      calls.fieldMappingChanged.push(entity);
    },
    ...overrides,
  };
  return { actions, calls };
}

export function testDeps(prisma: PrismaClient, overrides: Partial<GraphQLDeps> = {}): GraphQLDeps {
  return {
    prisma,
    logger: silent,
    tokens: testTokens(prisma),
    graphiql: false,
    actions: fakeActions().actions,
    connectorHealth: () =>
      Promise.resolve({ marketo: { ok: true, mode: 'sandbox' }, dynamics: { ok: false, mode: 'sandbox', detail: '429 storm' } }),
    apiUsage: () => Promise.resolve({ marketo: { callsToday: 1200, dailyQuota: 50_000 }, dynamics: { calls: 321 } }),
    erasure: { suppressions: createSuppressions(prisma, 'test-erasure-key-0123456789-abcdefghij'), owner: 'graphql-test', leaseMs: 10_000 },
    ...overrides,
  };
}

/** A bare Express app with the handler mounted the way the service mounts it (before any body parser). */
export function graphqlApp(deps: GraphQLDeps): Express {
  const app = express();
  app.use('/graphql', createGraphQLHandler(deps).middleware);
  return app;
}

export interface GqlResponse {
  status: number;
  body: { data?: any; errors?: { message: string; extensions?: Record<string, unknown> }[] };
}

/** POSTs an operation; unless errors are expected, any GraphQL error fails with request and response printed. */
export async function gql(
  app: Express,
  query: string,
  variables: Record<string, unknown> = {},
  options: { token?: string | null; expectErrors?: boolean } = {},
): Promise<GqlResponse> {
  const token = options.token === undefined ? TOKEN : options.token;
  let req = request(app).post('/graphql').set('accept', 'application/json');
  if (token !== null) req = req.set('authorization', `Bearer ${token}`);
  const res = await req.send({ query, variables });
  if (!options.expectErrors && (res.status !== 200 || res.body.errors)) {
    throw new Error(
      `GraphQL request failed\n--- request\n${query}\n${JSON.stringify(variables)}\n--- response ${res.status}\n${JSON.stringify(res.body, null, 2)}`,
    );
  }
  return { status: res.status, body: res.body };
}

export const LEAD_ID = '6f1c2a10-0000-4000-8000-000000000001';
export const CONTACT_ID = '6f1c2a10-0000-4000-8000-000000000002';
export const FILTERED_ID = '6f1c2a10-0000-4000-8000-000000000003';

/** Three links (a lead with a collision, a contact with a refused value, a filtered one), their logs, events and sweeps. */
export async function seed(prisma: PrismaClient) {
  const t0 = new Date(Date.now() - 60 * 60_000);
  const at = (minutes: number) => new Date(t0.getTime() + minutes * 60_000);
  const lead = await prisma.syncLink.create({
    data: {
      marketoId: 1001,
      dynamicsEntity: 'LEAD',
      dynamicsId: LEAD_ID,
      snapshot: { email: 'ada@example.com', firstName: 'Ada', title: 'VP Sales' },
      fieldOrigins: {
        email: { side: 'MARKETO', at: at(1).toISOString() },
        firstName: { side: 'DYNAMICS', at: at(2).toISOString() },
        title: { side: 'MARKETO', at: at(30).toISOString() },
      },
      lastSyncedAt: at(30),
    },
  });
  const contact = await prisma.syncLink.create({
    data: {
      marketoId: 1002,
      dynamicsEntity: 'CONTACT',
      dynamicsId: CONTACT_ID,
      snapshot: { email: 'grace@example.com', phone: '+1 555 0100' },
      fieldOrigins: { email: { side: 'DYNAMICS', at: at(3).toISOString() } },
      rejectedValues: { phone: { side: 'DYNAMICS', value: 'not a phone', reason: 'validation', message: 'telephone1: invalid format' } },
      lastSyncedAt: at(10),
    },
  });
  const filtered = await prisma.syncLink.create({
    data: { marketoId: 1003, dynamicsEntity: 'CONTACT', dynamicsId: FILTERED_ID, status: 'FILTERED' },
  });

  const subject = { linkId: lead.id, marketoId: 1001, dynamicsEntity: 'LEAD' as const, dynamicsId: LEAD_ID };
  await prisma.activity.create({ data: { ...subject, type: 'LINKED', message: 'linked by email', occurredAt: at(1) } });
  await prisma.activity.create({
    data: {
      ...subject,
      type: 'UPDATED_IN_DYNAMICS',
      message: 'updated 1 field(s) in Dynamics',
      occurredAt: at(20),
      fields: [{ field: 'firstName', side: 'DYNAMICS', oldValue: 'Ad', newValue: 'Ada', baseValue: 'Ad' }],
    },
  });
  const collision = await prisma.activity.create({
    data: {
      ...subject,
      type: 'COLLISION_RESOLVED',
      message: 'title changed on both sides: Marketo wins (LEAD_MARKETO_WINS); the Dynamics value is kept here',
      occurredAt: at(30),
      fields: [
        {
          field: 'title',
          side: 'DYNAMICS',
          oldValue: 'Director',
          newValue: 'VP Sales',
          baseValue: 'Manager',
          losingValue: 'Director',
          marketoValue: 'VP Sales',
          dynamicsValue: 'Director',
          winner: 'MARKETO',
          rule: 'LEAD_MARKETO_WINS',
        },
      ],
    },
  });
  await prisma.activity.create({
    data: {
      linkId: contact.id,
      marketoId: 1002,
      dynamicsEntity: 'CONTACT',
      dynamicsId: CONTACT_ID,
      type: 'VALIDATION_REJECTED',
      message: 'telephone1: invalid format',
      occurredAt: at(40),
      fields: [{ field: 'phone', side: 'DYNAMICS', oldValue: '+1 555 0100', newValue: 'not a phone' }],
    },
  });

  const events: Record<string, string> = {};
  for (const [status, source, entity, marketoId] of [
    ['PENDING', 'MARKETO', null, 1001],
    ['PROCESSING', 'DYNAMICS', 'LEAD', null],
    ['FAILED', 'DYNAMICS', 'CONTACT', null],
    ['DEAD', 'MARKETO', null, 1002],
    ['DONE', 'DYNAMICS', 'LEAD', null],
  ] as const) {
    const { id } = await enqueue(prisma, {
      source,
      origin: 'WEBHOOK',
      operation: 'UPDATE',
      marketoId: marketoId ?? undefined,
      dynamicsEntity: entity ?? undefined,
      dynamicsId: entity === 'CONTACT' ? CONTACT_ID : entity === 'LEAD' ? LEAD_ID : undefined,
      payload: { hint: status },
      dedupeKey: `seed:${status}`,
    });
    await prisma.changeEvent.update({
      where: { id },
      data: {
        status,
        attempts: status === 'DEAD' ? 8 : status === 'FAILED' ? 2 : status === 'PENDING' ? 0 : 1,
        ...(status === 'FAILED' ? { lastError: 'Dynamics answered 429 (rate_limited)' } : {}),
        ...(status === 'DEAD' ? { lastError: 'Marketo answered 1003: invalid field', completedAt: new Date() } : {}),
      },
    });
    if (status === 'DONE') await completeEvent(prisma, id);
    events[status] = id;
  }

  const runs = [];
  for (const [minutes, status] of [
    [0, 'SUCCEEDED'],
    [5, 'FAILED'],
    [10, 'RUNNING'],
  ] as const) {
    runs.push(
      await prisma.syncRun.create({
        data: {
          trigger: 'SCHEDULE',
          status,
          owner: 'replica-a',
          startedAt: at(minutes),
          ...(status !== 'RUNNING' ? { finishedAt: at(minutes + 1) } : {}),
          counts: { scanned: 10 + minutes, updated: 2 },
          notes: status === 'FAILED' ? ['marketo 606 storm'] : [],
          ...(status === 'FAILED' ? { error: 'Marketo rate limit (606) did not clear' } : {}),
        },
      }),
    );
  }
  return { lead, contact, filtered, collision, events, runs };
}
