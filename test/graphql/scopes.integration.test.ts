/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are checked by assertions, not by types */
import type { GraphQLNamedType, GraphQLSchema } from 'graphql';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { buildSchema } from '../../src/graphql/schema.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';
import { fakeActions, gql, graphqlApp, OPERATE_TOKEN, READ_TOKEN, seed, testDeps, TOKEN } from './support.ts';

// Scopes: a read token runs every query and no mutation. The list of mutations is read from the
// schema itself, so a mutation added later is covered without touching this test. Every attempt
// leaves an audit entry.

// Types are told apart by their printed form and duck typing, not instanceof: graphql may be
// loaded twice in a test run (ESM and CJS).

/** A value of an input type (printed, e.g. "[ID!]") that passes validation, required fields only. */
function sample(schema: GraphQLSchema, printed: string): unknown {
  if (printed.endsWith('!')) return sample(schema, printed.slice(0, -1));
  if (printed.startsWith('[')) return [sample(schema, printed.slice(1, -1))];
  const type = schema.getType(printed) as GraphQLNamedType & Record<string, any>;
  if (typeof type['getValues'] === 'function') return type['getValues']()[0].value;
  if (typeof type['getFields'] === 'function') {
    const fields = Object.values(type['getFields']() as Record<string, { name: string; type: { toString(): string } }>).filter((f) => f.type.toString().endsWith('!'));
    return Object.fromEntries(fields.map((f) => [f.name, sample(schema, f.type.toString())]));
  }
  switch (printed) {
    case 'ID':
      return '0191c1c2-0000-7000-8000-000000000001';
    case 'Int':
      return 1;
    case 'Float':
      return 1.5;
    case 'Boolean':
      return true;
    case 'DateTime':
      return '2026-11-01T00:00:00Z';
    default:
      return 'x';
  }
}

/** Every mutation of the schema as an operation with all its arguments passed as variables. */
function everyMutation() {
  const schema = buildSchema();
  const mutation = schema.getMutationType()!;
  return Object.values(mutation.getFields()).map((field) => {
    const args = field.args;
    const decl = args.map((a) => `$${a.name}: ${a.type.toString()}`).join(', ');
    const pass = args.map((a) => `${a.name}: $${a.name}`).join(', ');
    const variables = Object.fromEntries(args.map((a) => [a.name, sample(schema, a.type.toString())]));
    const named = schema.getType(field.type.toString().replace(/[[\]!]/g, '')) as unknown as Record<string, unknown>;
    const selection = typeof named['getFields'] === 'function' ? ' { __typename }' : '';
    return {
      name: field.name,
      query: `mutation${decl ? `(${decl})` : ''} { ${field.name}${pass ? `(${pass})` : ''}${selection} }`,
      variables,
    };
  });
}

describe.each(testEngines())('token scopes and the audit log on %s', (engine) => {
  let db: Database;
  useMigratedDatabase(engine, { opened: (opened) => (db = opened) });
  beforeAll(async () => {
    await seed(db.prisma);
  });

  it('a read token can run none of the mutations: FORBIDDEN, nothing done, each attempt audited', async () => {
    const fake = fakeActions();
    const app = graphqlApp(testDeps(db.prisma, { actions: fake.actions }));
    const mutations = everyMutation();
    expect(mutations.map((m) => m.name)).toEqual(
      expect.arrayContaining(['replayChangeEvent', 'resolveCollision', 'requestSweep', 'upsertFieldMapping', 'forgetPerson', 'createApiToken', 'revokeApiToken']),
    );
    await gql(app, '{ __typename }', {}, { token: READ_TOKEN }); // the test tokens are stored on first use
    const before = {
      links: await db.prisma.syncLink.count(),
      activities: await db.prisma.activity.count(),
      events: await db.prisma.changeEvent.findMany({ select: { id: true, status: true }, orderBy: { id: 'asc' } }),
      tokens: await db.prisma.apiToken.count(),
      mappings: await db.prisma.fieldMapping.findMany({ orderBy: { id: 'asc' } }),
    };
    await db.prisma.auditEntry.deleteMany();
    for (const m of mutations) {
      const res = await gql(app, m.query, m.variables, { token: READ_TOKEN, expectErrors: true });
      expect(res.status, m.name).toBe(200);
      expect(res.body.errors?.[0]?.extensions?.['code'], `${m.name}: ${JSON.stringify(res.body)}`).toBe('FORBIDDEN');
      expect(res.body.data?.[m.name] ?? null, m.name).toBeNull();
    }
    expect(fake.calls).toEqual(fakeActions().calls);
    expect({
      links: await db.prisma.syncLink.count(),
      activities: await db.prisma.activity.count(),
      events: await db.prisma.changeEvent.findMany({ select: { id: true, status: true }, orderBy: { id: 'asc' } }),
      tokens: await db.prisma.apiToken.count(),
      mappings: await db.prisma.fieldMapping.findMany({ orderBy: { id: 'asc' } }),
    }).toEqual(before);
    const audit = await db.prisma.auditEntry.findMany();
    expect(audit.map((a) => a.action).sort()).toEqual(mutations.map((m) => m.name).sort());
    for (const entry of audit) expect(entry).toMatchObject({ outcome: 'FORBIDDEN', tokenName: 'reader' });
  });

  it('a read token runs queries, the token list included (never a secret)', async () => {
    const app = graphqlApp(testDeps(db.prisma));
    const res = await gql(app, '{ syncStatus { backlog { pending } } apiTokens { name scope createdAt lastUsedAt } }', {}, { token: READ_TOKEN });
    expect(res.body.data.syncStatus.backlog.pending).toEqual(expect.any(Number));
    expect(res.body.data.apiTokens.map((t: { name: string; scope: string }) => [t.name, t.scope]).sort()).toEqual([['env', 'ADMIN'], ['operator', 'OPERATE'], ['reader', 'READ']]);
    expect(JSON.stringify(res.body)).not.toContain(TOKEN);
    expect(JSON.stringify(res.body)).not.toContain(READ_TOKEN);
  });

  it('an admin token creates a token (secret shown once), lists it without the secret, and revokes it', async () => {
    const app = graphqlApp(testDeps(db.prisma));
    const created = await gql(app, 'mutation { createApiToken(name: "grafana", scope: READ) { ok error secret token { id name scope } } }');
    const { secret, token } = created.body.data.createApiToken;
    expect(token).toMatchObject({ name: 'grafana', scope: 'READ' });
    expect(secret).toMatch(/^mds_/);
    const listed = await gql(app, '{ apiTokens { id name scope createdAt lastUsedAt } }', {}, { token: secret });
    expect(listed.body.data.apiTokens.map((t: { name: string }) => t.name)).toContain('grafana');
    expect(JSON.stringify(listed.body)).not.toContain(secret);
    const forbidden = await gql(app, `mutation { revokeApiToken(id: "${token.id}") { ok } }`, {}, { token: secret, expectErrors: true });
    expect(forbidden.body.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');
    const revoked = await gql(app, `mutation { revokeApiToken(id: "${token.id}") { ok error token { revokedAt } } }`);
    expect(revoked.body.data.revokeApiToken).toMatchObject({ ok: true, error: null });
    const after = await gql(app, '{ apiTokens { name } }', {}, { token: secret, expectErrors: true });
    expect(after.status).toBe(401);
    const stored = JSON.stringify(await db.prisma.auditEntry.findMany());
    expect(stored).not.toContain(secret);
  });

  it('lets only an admin token mint or revoke tokens and erase people: operate is refused and audited', async () => {
    const app = graphqlApp(testDeps(db.prisma));
    const env = (await gql(app, '{ apiTokens { id name } }')).body.data.apiTokens.find((t: any) => t.name === 'env');
    const before = await db.prisma.apiToken.count();
    for (const mutation of [
      'mutation { createApiToken(name: "sneaky", scope: ADMIN) { ok } }',
      `mutation { revokeApiToken(id: "${env.id}") { ok } }`,
      'mutation { forgetPerson(marketoId: "1") { ok } }',
    ]) {
      const res = await gql(app, mutation, {}, { token: OPERATE_TOKEN, expectErrors: true });
      expect(res.body.errors?.[0], mutation).toMatchObject({ message: expect.stringContaining('needs an admin token; this token has the operate scope'), extensions: { code: 'FORBIDDEN' } });
    }
    expect(await db.prisma.apiToken.count()).toBe(before);
    const audit = await db.prisma.auditEntry.findMany({ where: { tokenName: 'operator' } });
    expect(audit.map((a) => [a.action, a.outcome]).sort()).toEqual([['createApiToken', 'FORBIDDEN'], ['forgetPerson', 'FORBIDDEN'], ['revokeApiToken', 'FORBIDDEN']]);
    // an operate token still runs the sync
    const sweep = await gql(app, 'mutation { requestSweep { ok } }', {}, { token: OPERATE_TOKEN });
    expect(sweep.body.data.requestSweep.ok).toBe(true);
  });

  it('creates a token that expires: past its expiry it authenticates nothing', async () => {
    const app = graphqlApp(testDeps(db.prisma));
    const bad = await gql(app, 'mutation { createApiToken(name: "short", scope: READ, expiresInDays: 0) { ok error } }');
    expect(bad.body.data.createApiToken).toMatchObject({ ok: false, error: expect.stringMatching(/expiresInDays/) });
    const created = await gql(app, 'mutation { createApiToken(name: "short", scope: READ, expiresInDays: 7) { ok secret token { id expiresAt } } }');
    const { secret, token } = created.body.data.createApiToken;
    const days = (Date.parse(token.expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThanOrEqual(7);
    expect((await gql(app, '{ apiTokens { name } }', {}, { token: secret })).status).toBe(200);
    await db.prisma.apiToken.update({ where: { id: token.id }, data: { expiresAt: new Date(Date.now() - 1_000) } });
    expect((await gql(app, '{ apiTokens { name } }', {}, { token: secret, expectErrors: true })).status).toBe(401);
  });

  it('refuses to revoke the last admin token over the API', async () => {
    const app = graphqlApp(testDeps(db.prisma));
    const tokens = await gql(app, '{ apiTokens { id name scope } }');
    const env = tokens.body.data.apiTokens.find((t: any) => t.name === 'env');
    const res = await gql(app, `mutation { revokeApiToken(id: "${env.id}") { ok error } }`);
    expect(res.body.data.revokeApiToken).toEqual({ ok: false, error: expect.stringMatching(/last admin token/) });
    expect((await gql(app, '{ apiTokens { name } }')).status).toBe(200);
  });

  it('audits every mutation with its token, outcome and arguments, newest first over auditEntries', async () => {
    const fake = fakeActions({ requestSweep: () => Promise.resolve({ runId: null, message: 'a sweep is already running' }) });
    const app = graphqlApp(testDeps(db.prisma, { actions: fake.actions }));
    await db.prisma.auditEntry.deleteMany();
    await gql(app, 'mutation { requestPersonSync(marketoId: 1001) { ok } }');
    await gql(app, 'mutation { requestSweep { ok error } }');
    await gql(app, 'mutation { replayChangeEvent(id: "0191c1c2-0000-7000-8000-00000000ffff") { ok } }');
    const res = await gql(app, '{ auditEntries(first: 2) { edges { node { action tokenName outcome detail at } } pageInfo { hasNextPage endCursor } } }', {}, { token: READ_TOKEN });
    const page = res.body.data.auditEntries;
    expect(page.edges.map((e: { node: Record<string, unknown> }) => [e.node['action'], e.node['outcome'], e.node['tokenName']])).toEqual([
      ['replayChangeEvent', 'REFUSED', 'env'],
      ['requestSweep', 'REFUSED', 'env'],
    ]);
    expect(page.edges[1].node.detail).toEqual({ args: {}, error: 'a sweep is already running' });
    expect(page.pageInfo.hasNextPage).toBe(true);
    const next = await gql(app, `{ auditEntries(first: 2, after: "${page.pageInfo.endCursor}") { edges { node { action outcome detail } } } }`);
    expect(next.body.data.auditEntries.edges.map((e: { node: unknown }) => e.node)).toEqual([{ action: 'requestPersonSync', outcome: 'OK', detail: { args: { marketoId: '1001' } } }]);
  });

  it('an action that throws is audited as FAILED and masked for the caller', async () => {
    const fake = fakeActions({ requestSweep: () => Promise.reject(new Error('database on fire')) });
    const app = graphqlApp(testDeps(db.prisma, { actions: fake.actions }));
    const res = await gql(app, 'mutation { requestSweep { ok } }', {}, { expectErrors: true });
    expect(res.body.errors?.[0]?.message).toBe('Unexpected error.');
    const entry = await db.prisma.auditEntry.findFirstOrThrow({ orderBy: [{ at: 'desc' }, { id: 'desc' }] });
    expect(entry).toMatchObject({ action: 'requestSweep', outcome: 'FAILED', detail: { args: {}, error: 'database on fire' } });
  });
});
