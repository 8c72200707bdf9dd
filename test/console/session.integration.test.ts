import express, { type Express } from 'express';
import request from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { createConsole } from '../../src/console/console.routes.ts';
import { createConsoleSessions, type ConsoleSessions } from '../../src/console/session.ts';
import type { Database } from '../../src/db/database.ts';
import { createGraphQLHandler } from '../../src/graphql/handler.ts';
import { useMigratedDatabase } from '../support/database.ts';
import { fakeActions, testDeps, TOKEN } from '../graphql/support.ts';
import { createRateLimiter } from '../../src/security/rate-limit.ts';
import { memoryTokens } from './tokens.ts';

// The console's sign-in and its cookie sessions as they reach /graphql: a signed cookie that
// names a token, a CSRF token per session, revocation through byId, and a read scope the server
// enforces on every mutation.

const csrfOf = (html: string) => /<meta name="csrf-token" content="([^"]+)"/.exec(html)?.[1] ?? '';
const cookieOf = (res: request.Response) => String((res.headers['set-cookie'] as unknown as string[] | undefined)?.[0] ?? '').split(';')[0]!;

describe('console sessions', () => {
  let db: Database;
  let tokens: ReturnType<typeof memoryTokens>;
  let sessions: ConsoleSessions;
  let calls: ReturnType<typeof fakeActions>['calls'];
  let app: Express;
  let clock = Date.now();

  useMigratedDatabase('pglite', { opened: (opened) => (db = opened) });
  beforeAll(() => {
    tokens = memoryTokens();
    sessions = createConsoleSessions({ prisma: db.prisma, tokens: tokens.api, now: () => clock });
    const fake = fakeActions();
    calls = fake.calls;
    app = express();
    app.use('/graphql', createGraphQLHandler({ ...testDeps(db.prisma, { actions: fake.actions }), sessions }).middleware);
    app.use(createConsole({ sessions, sandbox: false }));
  });

  async function signIn(secret: string) {
    const login = await request(app).post('/login').type('form').send({ token: secret });
    expect(login.status).toBe(303);
    const cookie = cookieOf(login);
    const shell = await request(app).get('/').set('cookie', cookie);
    expect(shell.status).toBe(200);
    return { cookie, csrf: csrfOf(shell.text), shell, setCookie: String((login.headers['set-cookie'] as unknown as string[])[0]) };
  }
  const post = (cookie: string, csrf: string | null, query: string) => {
    let req = request(app).post('/graphql').set('cookie', cookie).set('content-type', 'application/json');
    if (csrf !== null) req = req.set('x-csrf-token', csrf);
    return req.send({ query });
  };

  it('refuses a wrong token and signs a right one into an HttpOnly, SameSite=Strict cookie that names the token, not its secret', async () => {
    const wrong = await request(app).post('/login').type('form').send({ token: 'nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['set-cookie']).toBeUndefined();
    const { setCookie, shell, csrf } = await signIn(tokens.operateSecret);
    expect(setCookie).toMatch(/^mds_console=v2\.[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/);
    expect(setCookie).not.toContain(tokens.operateSecret);
    expect(shell.text).not.toContain(tokens.operateSecret);
    expect(shell.text).toContain('data-scope="operate"');
    expect(csrf).toMatch(/^[\w-]{20,}$/);
    expect(shell.headers['content-security-policy']).toContain("script-src 'self'");
  });

  it('answers a console request only with the session CSRF token in its header', async () => {
    const a = await signIn(tokens.operateSecret);
    const b = await signIn(tokens.operateSecret);
    const ok = await post(a.cookie, a.csrf, '{ syncStatus { backlog { pending } } }');
    expect(ok.status).toBe(200);
    expect(ok.body.data.syncStatus.backlog.pending).toBe(0);
    for (const csrf of [null, '', 'forged', b.csrf]) {
      const refused = await post(a.cookie, csrf, 'mutation { requestSweep { ok } }');
      expect(refused.status, String(csrf)).toBe(403);
      expect(refused.body.errors[0].extensions.code).toBe('FORBIDDEN');
    }
    expect(calls.requestSweep).toBe(0);
    const done = await post(a.cookie, a.csrf, 'mutation { requestSweep { ok } }');
    expect(done.body.data.requestSweep.ok).toBe(true);
    expect(calls.requestSweep).toBe(1);
  });

  it('refuses a tampered or expired cookie, and ends every session of a revoked token', async () => {
    const s = await signIn(tokens.operateSecret);
    const [name, value] = s.cookie.split('=') as [string, string];
    const tampered = value.slice(0, -1) + (value.endsWith('A') ? 'B' : 'A');
    expect((await post(`${name}=${tampered}`, s.csrf, '{ syncStatus { backlog { pending } } }')).status).toBe(401);

    clock += 13 * 3600_000;
    expect((await post(s.cookie, s.csrf, '{ syncStatus { backlog { pending } } }')).status).toBe(401);
    expect((await request(app).get('/').set('cookie', s.cookie)).status).toBe(401);
    clock = Date.now();

    const fresh = await signIn(tokens.operateSecret);
    tokens.revoke('tok-operate');
    expect((await post(fresh.cookie, fresh.csrf, '{ syncStatus { backlog { pending } } }')).status).toBe(401);
    const page = await request(app).get('/').set('cookie', fresh.cookie);
    expect(page.status).toBe(401);
    expect(page.text).toContain('API token');
  });

  it('lets a read token see everything and refuses its every mutation on the server', async () => {
    const s = await signIn(tokens.readSecret);
    expect(s.shell.text).toContain('data-scope="read"');
    expect(s.shell.text).toContain('read-only');
    const read = await post(s.cookie, s.csrf, '{ syncRuns { edges { node { id } } } fieldMappings { canonicalField } }');
    expect(read.status).toBe(200);
    expect(read.body.data.fieldMappings.length).toBeGreaterThan(0);
    const before = { ...calls, resolveCollision: calls.resolveCollision.length, requestPersonSync: calls.requestPersonSync.length };
    for (const mutation of ['mutation { requestSweep { ok } }', 'mutation { requestPersonSync(marketoId: "1") { ok } }', 'mutation { replayChangeEvents(allDead: true) { ok } }']) {
      const refused = await post(s.cookie, s.csrf, mutation);
      expect(refused.body.data ?? null, mutation).toBeNull();
      expect(refused.body.errors[0]).toMatchObject({ message: expect.stringContaining('needs an operate token'), extensions: { code: 'FORBIDDEN' } });
    }
    expect(calls.requestSweep).toBe(before.requestSweep);
    expect(calls.requestPersonSync.length).toBe(before.requestPersonSync);
  });

  it('keeps bearer clients as they were: no cookie, no CSRF token', async () => {
    const res = await request(app).post('/graphql').set('authorization', `Bearer ${TOKEN}`).send({ query: '{ syncStatus { backlog { pending } } }' });
    expect(res.status).toBe(200);
    const wrong = await request(app).post('/graphql').set('authorization', 'Bearer wrong').send({ query: '{ syncStatus { backlog { pending } } }' });
    expect(wrong.status).toBe(401);
  });

  it('signs out only with the CSRF token, clears the cookie and ends the session on the server', async () => {
    const fresh = createConsoleSessions({ prisma: db.prisma, tokens: tokens.api });
    const own = express().use(createConsole({ sessions: fresh, sandbox: true }));
    const login = await request(own).post('/login').type('form').send({ token: tokens.readSecret });
    const cookie = cookieOf(login);
    const shell = await request(own).get('/').set('cookie', cookie);
    expect(shell.text).toContain('SANDBOX');
    expect((await request(own).post('/logout').set('cookie', cookie).type('form').send({})).status).toBe(403);
    const out = await request(own).post('/logout').set('cookie', cookie).type('form').send({ csrf: csrfOf(shell.text) });
    expect(out.status).toBe(303);
    expect(String((out.headers['set-cookie'] as unknown as string[])[0])).toContain('Max-Age=0');
    // a copy of the cookie kept elsewhere opens nothing any more
    expect((await request(own).get('/').set('cookie', cookie).expect(401)).text).toContain('API token');
  });

  it('stores only a hash of the session: the database holds nothing that opens the console', async () => {
    const s = await signIn(tokens.readSecret);
    const secret = s.cookie.split('=')[1]!.slice('v2.'.length);
    const rows = await db.prisma.consoleSession.findMany();
    expect(rows.length).toBeGreaterThan(0);
    const dump = JSON.stringify(rows) + JSON.stringify(await db.prisma.serviceSetting.findMany());
    expect(dump).not.toContain(secret);
    // what a dump does hold, sent as a cookie, is no session
    for (const row of rows) expect((await request(app).get('/').set('cookie', `mds_console=v2.${row.secretHash}`)).status).toBe(401);
  });

  it('limits sign-in attempts per client address, right or wrong, and answers 429 with Retry-After', async () => {
    const limited = express();
    limited.set('trust proxy', true);
    limited.use(createConsole({ sessions, sandbox: false, loginLimiter: createRateLimiter(db.prisma, { limit: 3, windowMs: 15 * 60_000, now: () => clock }) }));
    const attempt = (from: string, token: string) => request(limited).post('/login').set('x-forwarded-for', from).type('form').send({ token });
    expect((await attempt('203.0.113.7', 'guess-1')).status).toBe(401);
    expect((await attempt('203.0.113.7', 'guess-2')).status).toBe(401);
    expect((await attempt('203.0.113.7', tokens.readSecret)).status).toBe(303);
    const refused = await attempt('203.0.113.7', tokens.readSecret);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(refused.headers['set-cookie']).toBeUndefined();
    // another client is not held up by the first one's guesses
    expect((await attempt('198.51.100.2', tokens.readSecret)).status).toBe(303);
  });

  it('marks the cookie Secure behind a TLS proxy when TRUST_PROXY lets Express believe it', async () => {
    const behind = (trust: boolean) => {
      const proxied = express();
      proxied.set('trust proxy', trust);
      return proxied.use(createConsole({ sessions, sandbox: false }));
    };
    const viaProxy = (trust: boolean) => request(behind(trust)).post('/login').set('x-forwarded-proto', 'https').type('form').send({ token: tokens.readSecret });
    expect(String((await viaProxy(true)).headers['set-cookie'])).toMatch(/; Secure$/);
    expect(String((await viaProxy(false)).headers['set-cookie'])).not.toContain('Secure');
  });
});
