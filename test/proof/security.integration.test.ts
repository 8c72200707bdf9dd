import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { bearerSecret, hashSecret } from '../../src/auth/tokens.ts';
import { createLogger } from '../../src/logger.ts';
import { startService, type RunningService } from '../../src/main.ts';
import { secretMatches } from '../../src/webhooks/auth.ts';
import { freshDatabase, testEngines, type TestDatabase } from '../support/database.ts';

// Nobody let in: every endpoint refuses a missing or wrong secret and stores nothing, secrets are
// compared in constant time by the shared helpers and never reach a log line, GraphQL bounds
// depth/cost/aliases, bodies are bounded, responses carry security headers, and the image does
// not run as root.

const source = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
const secrets = {
  marketo: 'mkto-secret-0123456789-abcdefgh',
  dynamics: 'dyn-secret-0123456789-abcdefghij',
  graphql: 'graphql-token-0123456789-abcdefg',
};
const sample = readFileSync(new URL('../fixtures/dataverse-webhook-contact-update.json', import.meta.url), 'utf8');

describe.each(testEngines())('security on %s', (engine) => {
  let service: RunningService;
  let database: TestDatabase;
  let lines: string[] = [];
  let capturing = false;

  beforeAll(async () => {
    database = await freshDatabase(engine);
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: 'memory://',
      LOG_LEVEL: 'trace',
      MARKETO_WEBHOOK_SECRET: secrets.marketo,
      DYNAMICS_WEBHOOK_SECRET: secrets.dynamics,
      GRAPHQL_API_TOKEN: secrets.graphql,
      ...(database.url ? { DATABASE_URL: database.url } : {}),
    });
    // the production logger's redaction, writing into memory (every level, so nothing escapes the check)
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        if (capturing) lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const logger = createLogger({ level: 'trace', destination: sink });
    service = await startService(config, { logger, sandbox: { marketoRateWindowMs: 1_000 } });
    await service.worker.stop();
  });
  afterAll(async () => {
    await service.stop('test finished');
    await database.drop();
  });

  const stored = () => service.db.prisma.changeEvent.count();
  const post = (path: string) => request(service.url).post(path).set('content-type', 'application/json');

  describe('every endpoint refuses a missing or wrong secret and stores nothing', () => {
    const sameLengthWrong = (secret: string) => secret.replace(/.$/, (c) => (c === 'x' ? 'y' : 'x'));
    it.each([
      ['person-changed', '/webhooks/marketo/person-changed', '{"marketoId": 1}'],
      ['sync-person', '/webhooks/marketo/sync-person', '{"marketoId": 1}'],
    ])('Marketo %s: 401 without, with a wrong and with a nearly right X-Webhook-Secret', async (_name, path, body) => {
      const before = await stored();
      const none = await post(path).send(body);
      const wrong = await post(path).set('x-webhook-secret', 'wrong').send(body);
      const near = await post(path).set('x-webhook-secret', sameLengthWrong(secrets.marketo)).send(body);
      const otherSystems = await post(path).set('x-webhook-secret', secrets.dynamics).send(body);
      expect([none.status, wrong.status, near.status, otherSystems.status]).toEqual([401, 401, 401, 401]);
      expect(none.body.error.code).toBe('unauthorized');
      expect(await stored()).toBe(before);
      const ok = await post(path).set('x-webhook-secret', secrets.marketo).send(body);
      expect(ok.status).toBeLessThan(500);
      expect(ok.status).not.toBe(401);
    });

    it('Dataverse: 401 without, with a wrong ?code= or X-Webhook-Secret; accepted with either', async () => {
      const before = await stored();
      const answers = await Promise.all([
        post('/webhooks/dynamics').send(sample),
        post(`/webhooks/dynamics?code=wrong`).send(sample),
        post(`/webhooks/dynamics?code=${encodeURIComponent(sameLengthWrong(secrets.dynamics))}`).send(sample),
        post('/webhooks/dynamics').set('x-webhook-secret', secrets.marketo).send(sample),
        post(`/webhooks/dynamics?code=`).send(sample),
      ]);
      expect(answers.map((a) => a.status)).toEqual([401, 401, 401, 401, 401]);
      expect(await stored()).toBe(before);
      await post(`/webhooks/dynamics?code=${encodeURIComponent(secrets.dynamics)}`).send(sample).expect(202);
      await post('/webhooks/dynamics').set('x-webhook-secret', secrets.dynamics).send(sample).expect(202);
    });

    it('GraphQL: 401 with a GraphQL error without, with a wrong or a non-Bearer token; runs with the right one', async () => {
      const query = { query: '{ syncStatus { backlog { pending } } }' };
      for (const authorization of [undefined, 'Bearer wrong', `Bearer ${sameLengthWrong(secrets.graphql)}`, `Basic ${secrets.graphql}`, 'Bearer ', secrets.graphql]) {
        const req = post('/graphql');
        if (authorization !== undefined) req.set('authorization', authorization);
        const res = await req.send(query);
        expect(res.status, String(authorization)).toBe(401);
        expect(res.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
        expect(res.body.data).toBeUndefined();
      }
      const ok = await post('/graphql').set('authorization', `Bearer ${secrets.graphql}`).send(query);
      expect(ok.status).toBe(200);
      expect(ok.body.data.syncStatus.backlog.pending).toEqual(expect.any(Number));
    });

    it('the sweep and every mutation sit behind the same token', async () => {
      const res = await post('/graphql').send({ query: 'mutation { requestSweep { ok message } }' });
      expect(res.status).toBe(401);
      expect(res.body.data).toBeUndefined();
    });
  });

  it('authenticates webhooks before reading their bodies: a wrong secret is a 401 whatever the body (malformed, oversized)', async () => {
    const before = await stored();
    const huge = `{"marketoId":1,"pad":"${'a'.repeat(600 * 1024)}"}`;
    for (const [path, header] of [['/webhooks/marketo/person-changed', 'x-webhook-secret'], ['/webhooks/marketo/sync-person', 'x-webhook-secret'], ['/webhooks/dynamics', 'x-webhook-secret']] as const) {
      for (const body of ['{not json', huge]) {
        const res = await post(path).set(header, 'wrong-secret-0123456789').send(body);
        expect(res.status, `${path} ${body.length}`).toBe(401);
        expect(res.body.error.code).toBe('unauthorized');
      }
      // the right secret gets the body parsed, and its problems named
      const right = path.startsWith('/webhooks/marketo') ? secrets.marketo : secrets.dynamics;
      expect((await post(path).set(header, right).send('{not json')).status).toBe(400);
      expect((await post(path).set(header, right).send(huge)).status).toBe(413);
    }
    expect(await stored()).toBe(before);
  });

  describe('secrets are compared in constant time by the shared helpers', () => {
    it('the helpers compare digests with timingSafeEqual, whatever the lengths', () => {
      expect(secretMatches(secrets.marketo, secrets.marketo)).toBe(true);
      for (const presented of ['', 'x', secrets.marketo.slice(0, -1), `${secrets.marketo}x`, secrets.marketo.toUpperCase(), undefined, null, 42, ['a']]) {
        expect(secretMatches(presented, secrets.marketo)).toBe(false);
      }
      expect(bearerSecret(`Bearer ${secrets.graphql}`)).toBe(secrets.graphql);
      expect(bearerSecret(`bearer  ${secrets.graphql}`)).toBe(secrets.graphql);
      for (const header of [null, undefined, '', 'Bearer', `Token ${secrets.graphql}`, `Bearer a b`]) {
        expect(bearerSecret(header)).toBe('');
      }
      // API tokens are looked up by the SHA-256 of the presented secret: no comparison of secrets at all
      expect(hashSecret(secrets.graphql)).toMatch(/^[0-9a-f]{64}$/);
      expect(source('src/auth/tokens.ts')).toMatch(/findUnique\(\{ where: \{ secretHash: hashSecret\(secret\) \}/);
      expect(source('src/webhooks/auth.ts')).toMatch(/timingSafeEqual\(/);
    });

    it('every webhook route authenticates through secretMatches and GraphQL through the token digests, never with ===', () => {
      expect(source('src/webhooks/auth.ts')).toMatch(/if \(!secretMatches\(options\.presented\(req\), options\.secret\)\)/);
      for (const file of ['src/webhooks/marketo.ts', 'src/webhooks/dynamics.ts']) {
        const text = source(file);
        expect(text, file).toMatch(/router\.use\(\s*\.\.\.authenticatedJson\(/);
        expect(text, file).not.toMatch(/[!=]==\s*(deps\.)?secret\b|\bsecret\s*[!=]==|presented\s*[!=]==/);
      }
      expect(source('src/graphql/handler.ts')).toMatch(/tokens\.authenticate\(bearerSecret\(/);
    });
  });

  it('no secret reaches the log, in requests that carry right or wrong ones', async () => {
    lines = [];
    capturing = true;
    try {
      const wrong = ['wrong-marketo-secret-0000', 'wrong-dynamics-code-1111', 'wrong-bearer-token-2222'];
      await post('/webhooks/marketo/person-changed').set('x-webhook-secret', secrets.marketo).send('{"marketoId": 77}');
      await post('/webhooks/marketo/person-changed').set('x-webhook-secret', wrong[0]!).send('{"marketoId": 77}');
      await post('/webhooks/marketo/person-changed').set('x-webhook-secret', secrets.marketo).send('{"marketoId": "not a number"}');
      await post('/webhooks/marketo/sync-person').set('x-webhook-secret', secrets.marketo).send('{"marketoId": 987654}');
      await post(`/webhooks/dynamics?code=${encodeURIComponent(secrets.dynamics)}`).send(sample);
      await post(`/webhooks/dynamics?code=${wrong[1]}`).send(sample);
      await post(`/webhooks/dynamics?code=${encodeURIComponent(secrets.dynamics)}`).send('{"broken":');
      await post('/graphql').set('authorization', `Bearer ${secrets.graphql}`).send({ query: '{ syncStatus { backlog { pending } } }' });
      await post('/graphql').set('authorization', `Bearer ${secrets.graphql}`).send({ query: '{ nope }' });
      await post('/graphql').set('authorization', `Bearer ${wrong[2]}`).send({ query: '{ syncStatus { backlog { pending } } }' });
      await request(service.url).get(`/nowhere?code=${encodeURIComponent(secrets.dynamics)}`).set('authorization', `Bearer ${secrets.graphql}`);
      // a request is logged when its response has finished, which may be after the client has it:
      // wait for the last one's line (a bound against a hang, not a pause)
      await vi.waitFor(() => expect(lines.join('')).toContain('/nowhere'), { timeout: 30_000, interval: 20 });
    } finally {
      capturing = false;
    }
    const log = lines.join('');
    expect(lines.length).toBeGreaterThan(5); // the requests were logged, just without their secrets
    expect(log).toContain('[redacted]');
    for (const secret of [secrets.marketo, secrets.dynamics, secrets.graphql, 'wrong-marketo-secret-0000', 'wrong-dynamics-code-1111', 'wrong-bearer-token-2222']) {
      expect(log.includes(secret), `${secret} appears in the log`).toBe(false);
      expect(log.includes(encodeURIComponent(secret)), `${secret} appears URL-encoded in the log`).toBe(false);
    }
  });

  describe('GraphQL limits', () => {
    const gql = (query: string) => post('/graphql').set('authorization', `Bearer ${secrets.graphql}`).send({ query });

    it('rejects a query deeper than the limit with a GraphQL error', async () => {
      const res = await gql(`{ links(first: 1) { edges { node { activities(first: 1) { edges { node { link { activities(first: 1) { edges { node { link { marketoId } } } } } } } } } } } }`);
      expect(res.status).toBeLessThan(500);
      expect(res.body.errors?.[0]?.message ?? '').toMatch(/depth|Cannot query field|Unknown/i);
      expect(res.body.data ?? null).toBeNull();
    });

    it('rejects too many aliases and too costly queries with a GraphQL error, and keeps serving', async () => {
      const aliases = await gql(`{ ${Array.from({ length: 40 }, (_, i) => `a${i}: syncStatus { backlog { pending } }`).join(' ')} }`);
      expect(aliases.status).toBeLessThan(500);
      expect(JSON.stringify(aliases.body.errors)).toMatch(/alias/i);
      const fields = Array.from({ length: 1_200 }, () => 'pending').join(' ');
      const costly = await gql(`{ syncStatus { backlog { ${fields} } } }`);
      expect(costly.status).toBeLessThan(500);
      // graphql-armor stops validating once a limit (cost, tokens) is exceeded
      expect(JSON.stringify(costly.body.errors)).toMatch(/cost|token|validation aborted/i);
      expect(costly.body.data ?? null).toBeNull();
      const ok = await gql('{ syncStatus { backlog { pending } } }');
      expect(ok.body.data.syncStatus.backlog.pending).toEqual(expect.any(Number));
    });
  });

  it('bounds request bodies: 413 with a JSON error on the webhooks and GraphQL, nothing stored', async () => {
    const before = await stored();
    const big = `{"marketoId":1,"pad":"${'a'.repeat(600 * 1024)}"}`;
    const webhook = await post('/webhooks/marketo/person-changed').set('x-webhook-secret', secrets.marketo).send(big);
    expect(webhook.status).toBe(413);
    expect(webhook.body.error.code).toBe('payload_too_large');
    const dataverse = await post(`/webhooks/dynamics?code=${encodeURIComponent(secrets.dynamics)}`).send(big);
    expect(dataverse.status).toBe(413);
    const graphql = await post('/graphql').set('authorization', `Bearer ${secrets.graphql}`).send(`{"query":"{ __typename }","pad":"${'a'.repeat(600 * 1024)}"}`);
    expect(graphql.status).toBe(413);
    expect(await stored()).toBe(before);
  });

  it('sends security headers (helmet) on every answer and hides the framework', async () => {
    for (const res of [
      await request(service.url).get('/healthz'),
      await post('/webhooks/marketo/person-changed').send('{}'),
      await post('/graphql').send({ query: '{ __typename }' }),
      await request(service.url).get('/nowhere'),
    ]) {
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['x-frame-options']).toBe('DENY');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
      expect(res.headers['content-security-policy']).toMatch(/default-src 'self'/);
      expect(res.headers['cross-origin-opener-policy']).toBe('same-origin');
      expect(res.headers['x-powered-by']).toBeUndefined();
    }
  });
});

describe('the container image', () => {
  it('runs as a non-root user', () => {
    const dockerfile = source('Dockerfile');
    const finalStage = dockerfile.split(/^FROM /m).at(-1) ?? '';
    const users = [...finalStage.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)(:.*)?$/);
    // the user is switched before the process starts
    expect(finalStage.search(/^USER /m)).toBeLessThan(finalStage.search(/^(CMD|ENTRYPOINT) /m));
  });
});
