import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import {
  createApiTokens,
  ensureConfiguredToken,
  ensureStartupToken,
  hashSecret,
  NoApiTokenError,
  SECRET_PREFIX,
} from '../../src/auth/tokens.ts';
import { runTokenCommand } from '../../src/auth/token-cli.ts';
import type { Database } from '../../src/db/database.ts';
import { testEngines, useMigratedDatabase } from '../support/database.ts';

// API tokens: only digests are stored, several are valid at once, revocation is immediate, and
// start-up never makes a token outside sandbox mode.

describe.each(testEngines())('API tokens on %s', (engine) => {
  let db!: Database;
  useMigratedDatabase(engine, {
    opened: (opened) => (db = opened),
    empty: async (db) => {
      await db.prisma.apiToken.deleteMany();
      await db.prisma.serviceSetting.deleteMany();
    },
  });

  /** every stored text of the token and settings tables, to look for secrets in */
  const storedText = async () => JSON.stringify([await db.prisma.apiToken.findMany(), await db.prisma.serviceSetting.findMany()]);

  it('stores only the digest of a secret; the secret authenticates its caller, a wrong one nobody', async () => {
    const tokens = createApiTokens(db.prisma);
    const { token, secret } = await tokens.create({ name: 'console', scope: 'read' });
    expect(secret.startsWith(SECRET_PREFIX)).toBe(true);
    expect(secret.length).toBeGreaterThanOrEqual(SECRET_PREFIX.length + 43);
    expect(await storedText()).not.toContain(secret);
    expect((await db.prisma.apiToken.findUniqueOrThrow({ where: { id: token.tokenId } })).secretHash).toBe(hashSecret(secret));
    expect(await tokens.authenticate(secret)).toEqual({ tokenId: token.tokenId, name: 'console', scope: 'read' });
    for (const wrong of ['', `${secret}x`, secret.slice(0, -1), hashSecret(secret)]) expect(await tokens.authenticate(wrong)).toBeNull();
  });

  it('keeps several tokens valid at once and revokes one without touching the others', async () => {
    // a clock a second apart per call: "newest first" must not rest on the wall clock's milliseconds
    let at = Date.parse('2026-01-05T09:00:00Z');
    const tokens = createApiTokens(db.prisma, { now: () => new Date((at += 1_000)) });
    const old = await tokens.create({ name: 'deploy-2025', scope: 'operate' });
    const fresh = await tokens.create({ name: 'deploy-2026', scope: 'operate' });
    const reader = await tokens.create({ name: 'grafana', scope: 'read' });
    for (const t of [old, fresh, reader]) expect(await tokens.authenticate(t.secret)).not.toBeNull();
    expect(await tokens.revoke(old.token.tokenId)).toBe(true);
    expect(await tokens.revoke(old.token.tokenId)).toBe(false);
    expect(await tokens.authenticate(old.secret)).toBeNull();
    expect(await tokens.byId(old.token.tokenId)).toBeNull();
    expect(await tokens.authenticate(fresh.secret)).toMatchObject({ name: 'deploy-2026', scope: 'operate' });
    expect(await tokens.byId(reader.token.tokenId)).toEqual({ tokenId: reader.token.tokenId, name: 'grafana', scope: 'read' });
    expect((await tokens.list()).map((t) => t.name)).toEqual(['grafana', 'deploy-2026']);
    expect((await tokens.list({ includeRevoked: true })).map((t) => t.name).sort()).toEqual(['deploy-2025', 'deploy-2026', 'grafana']);
    expect(await tokens.byId('not-a-uuid')).toBeNull();
    expect(await tokens.revoke('not-a-uuid')).toBe(false);
  });

  it('records the last use at most once a minute per token (injected clock)', async () => {
    let now = new Date('2026-11-01T10:00:00Z');
    // the timestamp is written fire-and-forget: count the writes as they are sent, and await them
    const writes: Promise<unknown>[] = [];
    const apiToken = new Proxy(db.prisma.apiToken, {
      get(delegate, method, receiver): unknown {
        if (method !== 'update') return Reflect.get(delegate, method, receiver);
        return (...args: Parameters<typeof delegate.update>) => {
          const write = delegate.update(...args);
          writes.push(write);
          return write;
        };
      },
    });
    const prisma = new Proxy(db.prisma, { get: (client, prop, receiver): unknown => (prop === 'apiToken' ? apiToken : Reflect.get(client, prop, receiver)) });
    const tokens = createApiTokens(prisma, { now: () => now });
    const { token, secret } = await tokens.create({ name: 'ci', scope: 'read' });
    const lastUsed = async () => {
      await Promise.all(writes);
      return (await db.prisma.apiToken.findUniqueOrThrow({ where: { id: token.tokenId } })).lastUsedAt?.toISOString() ?? null;
    };
    expect(await lastUsed()).toBeNull();
    await tokens.authenticate(secret);
    expect(writes).toHaveLength(1);
    expect(await lastUsed()).toBe('2026-11-01T10:00:00.000Z');
    now = new Date('2026-11-01T10:00:30Z');
    await tokens.authenticate(secret);
    expect(writes).toHaveLength(1);
    expect(await lastUsed()).toBe('2026-11-01T10:00:00.000Z');
    now = new Date('2026-11-01T10:01:05Z');
    await tokens.authenticate(secret);
    expect(writes).toHaveLength(2);
    expect(await lastUsed()).toBe('2026-11-01T10:01:05.000Z');
  });

  it('refuses names that are empty, too long or carry control characters', async () => {
    const tokens = createApiTokens(db.prisma);
    for (const name of ['', '   ', 'x'.repeat(101), 'line\nbreak']) await expect(tokens.create({ name, scope: 'read' })).rejects.toThrow(/name/);
  });

  it('GRAPHQL_API_TOKEN becomes the admin token "env", stored as a digest; a new value rotates it', async () => {
    const first = 'configured-token-0123456789';
    expect(await ensureStartupToken(db.prisma, { configured: first, production: true })).toEqual({ kind: 'configured', secret: first });
    await Promise.all([ensureConfiguredToken(db.prisma, first), ensureConfiguredToken(db.prisma, first)]);
    const tokens = createApiTokens(db.prisma);
    expect(await tokens.authenticate(first)).toMatchObject({ name: 'env', scope: 'admin' });
    expect(await storedText()).not.toContain(first);
    expect(await db.prisma.apiToken.count()).toBe(1);

    const second = 'configured-token-rotated-987654';
    await ensureStartupToken(db.prisma, { configured: second, production: true });
    expect(await tokens.authenticate(second)).toMatchObject({ name: 'env', scope: 'admin' });
    expect(await tokens.authenticate(first)).toBeNull();
  });

  it('in production refuses to start without a token, and never makes one up', async () => {
    await expect(ensureStartupToken(db.prisma, { configured: undefined, production: true })).rejects.toBeInstanceOf(NoApiTokenError);
    await expect(ensureStartupToken(db.prisma, { configured: '  ', production: true })).rejects.toThrow(/npm run token -- create/);
    expect(await db.prisma.apiToken.count()).toBe(0);
    const tokens = createApiTokens(db.prisma);
    const cli = await tokens.create({ name: 'ops', scope: 'operate' });
    expect(await ensureStartupToken(db.prisma, { configured: undefined, production: true })).toEqual({ kind: 'stored' });
    await tokens.revoke(cli.token.tokenId);
    await expect(ensureStartupToken(db.prisma, { configured: undefined, production: true })).rejects.toBeInstanceOf(NoApiTokenError);
  });

  it('keeps a revoked GRAPHQL_API_TOKEN revoked across restarts until a new value is set', async () => {
    const value = 'configured-token-to-revoke-0123';
    await ensureStartupToken(db.prisma, { configured: value, production: true });
    const tokens = createApiTokens(db.prisma);
    const env = await tokens.authenticate(value);
    const spare = await tokens.create({ name: 'spare admin', scope: 'admin' });
    expect(await tokens.revoke(env!.tokenId)).toBe(true);
    // the next start with the same value: still revoked, the other tokens serve
    expect(await ensureStartupToken(db.prisma, { configured: value, production: true })).toEqual({ kind: 'stored', configuredRevoked: true });
    expect(await tokens.authenticate(value)).toBeNull();
    // sandbox mode makes its own token instead of reviving the revoked one
    const sandbox = await ensureStartupToken(db.prisma, { configured: value, production: false });
    expect(sandbox).toMatchObject({ kind: 'generated', configuredRevoked: true });
    expect(await tokens.authenticate(value)).toBeNull();
    // a new value is the operator's decision: it works
    const next = 'configured-token-new-value-4567';
    expect(await ensureStartupToken(db.prisma, { configured: next, production: true })).toEqual({ kind: 'configured', secret: next });
    expect(await tokens.authenticate(next)).toMatchObject({ name: 'env', scope: 'admin' });
    await tokens.revoke(spare.token.tokenId);
  });

  it('in sandbox mode makes an admin token at each start and revokes the previous one', async () => {
    const tokens = createApiTokens(db.prisma);
    const first = await ensureStartupToken(db.prisma, { configured: undefined, production: false });
    const second = await ensureStartupToken(db.prisma, { configured: undefined, production: false });
    if (first.kind !== 'generated' || second.kind !== 'generated') throw new Error('expected generated tokens');
    expect(await tokens.authenticate(first.secret)).toBeNull();
    expect(await tokens.authenticate(second.secret)).toMatchObject({ name: 'sandbox', scope: 'admin' });
    expect(await storedText()).not.toContain(second.secret);
  });

  it('the migration turns the clear token of earlier versions into a digest and deletes the clear one', async () => {
    const clear = 'legacy-clear-token-0123456789';
    await db.prisma.serviceSetting.create({ data: { key: 'graphql.apiToken', value: clear } });
    const dir = new URL('../../prisma/migrations/', import.meta.url);
    const sql = await readFile(new URL('20261129132333_tokens_audit_retention/migration.sql', dir), 'utf8');
    const tail = sql.slice(sql.indexOf('-- The API token kept in clear'));
    for (const statement of tail.split(';').map((s) => s.replace(/^\s*--.*$/gm, '').trim()).filter(Boolean)) {
      await db.prisma.$executeRawUnsafe(statement);
    }
    expect(await db.prisma.serviceSetting.findUnique({ where: { key: 'graphql.apiToken' } })).toBeNull();
    expect(await storedText()).not.toContain(clear);
    expect(await createApiTokens(db.prisma).authenticate(clear)).toMatchObject({ name: 'migrated', scope: 'operate' });
  });

  it('the CLI creates (secret printed once), lists (no secret) and revokes tokens, and audits the changes as "cli"', async () => {
    const created = await runTokenCommand(db.prisma, ['create', '--scope', 'read', '--name', 'grafana']);
    expect(created.code).toBe(0);
    const secret = /\n(mds_\S+)\n/.exec(created.output)?.[1] ?? '';
    expect(await createApiTokens(db.prisma).authenticate(secret)).toMatchObject({ name: 'grafana', scope: 'read' });
    const listed = await runTokenCommand(db.prisma, ['list']);
    expect(listed.output).toContain('grafana');
    expect(listed.output).not.toContain(secret);
    const id = /id ([0-9a-f-]{36})/.exec(created.output)?.[1] ?? '';
    expect((await runTokenCommand(db.prisma, ['revoke', id])).code).toBe(0);
    expect((await runTokenCommand(db.prisma, ['revoke', id])).code).toBe(1);
    expect(await createApiTokens(db.prisma).authenticate(secret)).toBeNull();
    expect((await runTokenCommand(db.prisma, ['list'])).output).toBe('no tokens\n');
    expect((await runTokenCommand(db.prisma, ['list', '--all'])).output).toContain('revoked');
    const expiring = await runTokenCommand(db.prisma, ['create', '--scope', 'admin', '--name', 'break-glass', '--expires-in-days', '2']);
    expect(expiring.code).toBe(0);
    expect((await runTokenCommand(db.prisma, ['list'])).output).toMatch(/admin .* expires \d{4}-.*break-glass/);
    for (const bad of [['create', '--scope', 'root', '--name', 'x'], ['create', '--scope', 'read'], ['create', '--scope', 'read', '--name', 'x', '--expires-in-days', 'soon'], ['revoke'], ['frobnicate'], ['list', '--bogus']]) {
      expect((await runTokenCommand(db.prisma, bad)).code, bad.join(' ')).toBe(2);
    }
    const audit = await db.prisma.auditEntry.findMany({ where: { tokenName: 'cli' }, orderBy: [{ at: 'asc' }, { id: 'asc' }] });
    expect(audit.map((a) => [a.action, a.outcome])).toEqual([['token.create', 'OK'], ['token.revoke', 'OK'], ['token.revoke', 'REFUSED'], ['token.create', 'OK']]);
    expect(JSON.stringify(audit)).not.toContain(secret);
  });
});
