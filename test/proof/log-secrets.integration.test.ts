import { Writable } from 'node:stream';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { createDataverseClient } from '../../src/connectors/dynamics/dataverse.client.ts';
import { createMarketoClient } from '../../src/connectors/marketo/marketo.client.ts';
import { createLogger, redactText, scrub } from '../../src/logger.ts';
import { startService, type RunningService } from '../../src/main.ts';
import { freshDatabase, testEngines, type TestDatabase } from '../support/database.ts';

// The production logger at trace level, writing into memory, while every endpoint is called with
// right and wrong secrets, and while both vendor clients fail in every way that could quote a
// secret (token endpoints echoing the request, API errors echoing headers, refused connections).
// No secret may appear in the captured log, raw or URL-encoded.

const secrets = {
  marketoWebhook: 'mkto-webhook-secret-0123456789-ab',
  dynamicsWebhook: 'dyn-webhook-secret-0123456789-abc',
  graphql: 'graphql-api-token-0123456789-abcdef',
  marketoClient: 'marketo-client-secret-SHOULD-NOT-LEAK',
  dynamicsClient: 'dynamics-client-secret-SHOULD-NOT-LEAK',
  dynamicsAccess: 'eyJ0eXAiOiJKV1QiLCJhbGciOi.dataverse-access-token-LEAK',
  marketoAccess: 'marketo-access-token-cafe-babe-LEAK',
};

function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { lines, logger: createLogger({ level: 'trace', destination: sink }) };
}

function expectNoSecret(log: string, extra: string[] = []) {
  for (const secret of [...Object.values(secrets), ...extra]) {
    expect(log.includes(secret), `${secret} appears in the log`).toBe(false);
    expect(log.includes(encodeURIComponent(secret)), `${secret} appears URL-encoded in the log`).toBe(false);
  }
}

describe('log scrubbing (unit)', () => {
  it('blanks secret-named keys at any depth, secret URL parameters, bearer values and errors that quote them', () => {
    const error = Object.assign(new Error(`GET https://x.mktorest.com/identity/oauth/token?grant_type=client_credentials&client_secret=${secrets.marketoClient} failed`), {
      response: { headers: { Authorization: `Bearer ${secrets.dynamicsAccess}`, 'Set-Cookie': 'mds_console=abc' } },
      cause: new Error(`body: grant_type=client_credentials&client_secret=${secrets.dynamicsClient}`),
    });
    const out = JSON.stringify(
      scrub({
        err: error,
        deep: { a: { b: { c: { headers: { 'x-webhook-secret': secrets.marketoWebhook, cookie: 'mds_console=1' }, access_token: secrets.marketoAccess } } } },
        url: `https://org.crm.dynamics.com/webhooks/dynamics?code=${secrets.dynamicsWebhook}&x=1`,
        list: [{ clientSecret: secrets.dynamicsClient }, `Authorization: Bearer ${secrets.graphql}`],
        code: 606,
        nextPageToken: 'paging-token-kept',
      }),
    );
    expectNoSecret(out);
    expect(out).toContain('[redacted]');
    expect(out).toContain('606');
    expect(out).toContain('paging-token-kept');
    expect(out).toContain('x=1');
    expect(redactText('see ?code=abc&keep=1')).toBe('see ?code=[redacted]&keep=1');
  });
});

describe.each(testEngines())('no secret in the log on %s', (engine) => {
  let service: RunningService;
  let database: TestDatabase;
  let captured: ReturnType<typeof capture>;

  beforeAll(async () => {
    database = await freshDatabase(engine);
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: 'memory://',
      LOG_LEVEL: 'trace',
      MARKETO_WEBHOOK_SECRET: secrets.marketoWebhook,
      DYNAMICS_WEBHOOK_SECRET: secrets.dynamicsWebhook,
      GRAPHQL_API_TOKEN: secrets.graphql,
      ...(database.url ? { DATABASE_URL: database.url } : {}),
    });
    captured = capture();
    service = await startService(config, { logger: captured.logger, sandbox: { marketoRateWindowMs: 1_000 } });
  });
  afterAll(async () => {
    await service.stop('test finished');
    await database.drop();
  });

  it('every endpoint, with right and wrong secrets', async () => {
    const http = () => request(service.url);
    const bearer = `Bearer ${secrets.graphql}`;
    const sample = JSON.stringify({ InputParameters: [], PrimaryEntityName: 'contact', PrimaryEntityId: '6f1c2a10-0000-4000-8000-0000000000aa', MessageName: 'Update' });
    await http().post('/webhooks/marketo/person-changed').set('x-webhook-secret', secrets.marketoWebhook).set('content-type', 'application/json').send('{"marketoId": 77}');
    await http().post('/webhooks/marketo/person-changed').set('x-webhook-secret', 'wrong-marketo-secret-0000').send('{"marketoId": 77}');
    await http().post('/webhooks/marketo/sync-person').set('x-webhook-secret', secrets.marketoWebhook).set('content-type', 'application/json').send('{"marketoId": 1}');
    await http().post(`/webhooks/dynamics?code=${encodeURIComponent(secrets.dynamicsWebhook)}`).set('content-type', 'application/json').send(sample);
    await http().post('/webhooks/dynamics?code=wrong-dynamics-code-1111').set('content-type', 'application/json').send(sample);
    const created = await http()
      .post('/graphql')
      .set('authorization', bearer)
      .send({ query: 'mutation { createApiToken(name: "grafana", scope: READ) { secret } }' });
    const newSecret = String(created.body.data.createApiToken.secret);
    await http().post('/graphql').set('authorization', `Bearer ${newSecret}`).send({ query: '{ apiTokens { name } auditEntries(first: 5) { edges { node { detail } } } }' });
    await http().post('/graphql').set('authorization', `Bearer ${newSecret}`).send({ query: 'mutation { requestSweep { ok } }' });
    await http().post('/graphql').set('authorization', 'Bearer wrong-bearer-token-2222').send({ query: '{ syncStatus { backlog { pending } } }' });
    await http().post('/graphql').set('authorization', bearer).send({ query: '{ nope }' });
    const login = await http().post('/login').type('form').send({ token: secrets.graphql });
    const cookie = String(login.headers['set-cookie']?.[0] ?? '').split(';')[0]!;
    expect(cookie).toMatch(/^mds_console=.+/);
    const shell = await http().get('/').set('cookie', cookie);
    const csrf = /<meta name="csrf-token" content="([^"]+)"/.exec(shell.text)?.[1] ?? '';
    await http().post('/graphql').set('cookie', cookie).set('x-csrf-token', csrf).send({ query: '{ syncStatus { backlog { pending } } }' });
    await http().post('/graphql').set('cookie', cookie).send({ query: 'mutation { requestSweep { ok } }' });
    await http().post('/login').type('form').send({ token: 'wrong-login-token-3333' });
    await http().get('/metrics');
    await http().get('/healthz');
    await http().get('/readyz');
    await http().get(`/nowhere?code=${encodeURIComponent(secrets.dynamicsWebhook)}&access_token=${secrets.marketoAccess}`).set('authorization', bearer).set('cookie', cookie);
    // a request is logged when its response has finished, which may be after the client has it:
    // wait for the last one's line (a bound against a hang, not a pause)
    await vi.waitFor(() => expect(captured.lines.join('')).toContain('/nowhere'), { timeout: 30_000, interval: 20 });

    const log = captured.lines.join('');
    expect(captured.lines.length).toBeGreaterThan(10);
    expect(log).toContain('[redacted]');
    expectNoSecret(log, [newSecret, cookie.split('=')[1]!, csrf, 'wrong-marketo-secret-0000', 'wrong-dynamics-code-1111', 'wrong-bearer-token-2222', 'wrong-login-token-3333']);
  });
});

describe('no secret in the log of the vendor clients\' error paths', () => {
  /** A vendor that echoes what it was sent: the worst case for an error message. */
  const echo = (status: number, extra: Record<string, unknown> = {}) =>
    ((input: string | URL | Request, init?: RequestInit) => {
      const headers = Object.fromEntries(new Headers(init?.headers).entries());
      const body = typeof init?.body === 'string' ? init.body : init?.body instanceof URLSearchParams ? init.body.toString() : '';
      return Promise.resolve(new Response(JSON.stringify({ error: 'invalid_client', error_description: `rejected ${String(input instanceof Request ? input.url : input)} with ${JSON.stringify(headers)} and ${body}`, ...extra }), {
        status,
        headers: { 'content-type': 'application/json' },
      }));
    }) as typeof fetch;
  const urlOf = (input: string | URL | Request) => (input instanceof Request ? input.url : input.toString());

  it('Marketo: refused credentials, an API error quoting the token, a refused connection', async () => {
    const { lines, logger } = capture();
    const attempts = [
      createMarketoClient({ baseUrl: 'https://123-abc-456.mktorest.com', clientId: 'id', clientSecret: secrets.marketoClient, fetch: echo(401), logger, retry: { transientRetries: 1, baseDelayMs: 1 } }),
      createMarketoClient({
        baseUrl: 'https://123-abc-456.mktorest.com',
        clientId: 'id',
        clientSecret: secrets.marketoClient,
        logger,
        retry: { transientRetries: 1, baseDelayMs: 1 },
        fetch: (async (input: string | URL | Request, init?: RequestInit) =>
          urlOf(input).includes('/identity/')
            ? new Response(JSON.stringify({ access_token: secrets.marketoAccess, token_type: 'bearer', expires_in: 3599, scope: 'x' }), { status: 200, headers: { 'content-type': 'application/json' } })
            : echo(500)(input, init)),
      }),
      createMarketoClient({ baseUrl: 'http://127.0.0.1:9', clientId: 'id', clientSecret: secrets.marketoClient, logger, retry: { transientRetries: 0, baseDelayMs: 1 } }),
    ];
    for (const client of attempts) {
      const error = await client.describeLeadFields().then(() => null, (e: unknown) => e);
      expect(error).toBeTruthy();
      logger.error({ err: error, client: 'marketo' }, 'call failed');
      await client.close();
    }
    const log = lines.join('');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expectNoSecret(log);
  });

  it('Dataverse: refused credentials, an API error quoting the bearer token, a refused connection', async () => {
    const { lines, logger } = capture();
    const base = { tenantId: 't', clientId: 'id', clientSecret: secrets.dynamicsClient, logger, transientRetries: 1, retryBaseDelayMs: 1, sleep: () => Promise.resolve() };
    const attempts = [
      createDataverseClient({ ...base, url: 'https://org.crm.dynamics.com', tokenUrl: 'https://login.example/token', fetch: echo(401) }),
      createDataverseClient({
        ...base,
        url: 'https://org.crm.dynamics.com',
        tokenUrl: 'https://login.example/token',
        fetch: (async (input: string | URL | Request, init?: RequestInit) =>
          urlOf(input).includes('login.example')
            ? new Response(JSON.stringify({ access_token: secrets.dynamicsAccess, token_type: 'Bearer', expires_in: 3599 }), { status: 200, headers: { 'content-type': 'application/json' } })
            : echo(500)(input, init)),
      }),
      createDataverseClient({ ...base, url: 'http://127.0.0.1:9', tokenUrl: 'http://127.0.0.1:9/token' }),
    ];
    for (const client of attempts) {
      const error = await client.whoAmI().then(() => null, (e: unknown) => e);
      expect(error).toBeTruthy();
      logger.error({ err: error, client: 'dynamics' }, 'call failed');
    }
    const log = lines.join('');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expectNoSecret(log);
  });
});
