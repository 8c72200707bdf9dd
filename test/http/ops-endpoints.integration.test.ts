import { createHash } from 'node:crypto';
import { pino } from 'pino';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startService, type RunningService } from '../../src/main.ts';
import { startSandbox, type Sandbox } from '../../src/sandbox/sandbox.ts';
import { migratedEmbeddedDump } from '../support/database.ts';
import { bootService, type TestService } from '../support/service.ts';

// The service's edges for operators: the first start with real credentials and no API token, and
// what /readyz, /metrics and GraphiQL show to whom.

const silent = pino({ level: 'silent' });

describe('a first start with real credentials and no API token', () => {
  let systems: Sandbox;
  let service: RunningService;
  const marketoSecret = 'm'.repeat(32);

  beforeAll(async () => {
    // the simulators stand in for the real systems: the service sees only credentials
    systems = await startSandbox();
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      DATA_DIR: 'memory://',
      NODE_ENV: 'production',
      MARKETO_BASE_URL: systems.marketo.url,
      MARKETO_CLIENT_ID: systems.marketo.clientId,
      MARKETO_CLIENT_SECRET: systems.marketo.clientSecret,
      DYNAMICS_URL: systems.dataverse.url,
      DYNAMICS_TOKEN_URL: systems.dataverse.tokenUrl,
      DYNAMICS_TENANT_ID: systems.dataverse.tenantId,
      DYNAMICS_CLIENT_ID: systems.dataverse.clientId,
      DYNAMICS_CLIENT_SECRET: systems.dataverse.clientSecret,
      MARKETO_WEBHOOK_SECRET: marketoSecret,
      DYNAMICS_WEBHOOK_SECRET: 'd'.repeat(32),
    });
    expect(config.production).toBe(true);
    service = await startService(config, { logger: silent, embeddedStartFrom: await migratedEmbeddedDump() });
  });
  afterAll(async () => {
    await service?.stop('test');
    await systems?.close();
  });

  it('stays up and takes webhooks', async () => {
    expect(service.graphqlToken).toBeUndefined();
    const lead = systems.marketo.admin.createLead({ email: 'first.deploy@example.com', firstName: 'First', lastName: 'Deploy' });
    const answer = await request(service.url)
      .post('/webhooks/marketo/person-changed')
      .set('content-type', 'application/json')
      .set('x-webhook-secret', marketoSecret)
      .send(JSON.stringify({ marketoId: lead.id }))
      .expect(202);
    expect(answer.body).toMatchObject({ status: 'queued' });
  });

  it('explains in the API and on the console how to create the first token, until one exists', async () => {
    const api = await request(service.url).post('/graphql').send({ query: '{ __typename }' }).expect(401);
    expect(api.body.errors[0].message).toContain('token create --scope admin');
    const signIn = await request(service.url).get('/').expect(401);
    expect(signIn.text).toContain('token create --scope admin');

    const { secret } = await service.tokens.create({ name: 'first', scope: 'read' });
    const after = await request(service.url).post('/graphql').send({ query: '{ __typename }' }).expect(401);
    expect(after.body.errors[0].message).not.toContain('token create');
    await request(service.url).post('/graphql').set('authorization', `Bearer ${secret}`).send({ query: '{ __typename }' }).expect(200);
  });

  it('serves no GraphiQL in production, whatever NODE_ENV says', async () => {
    const page = await request(service.url).get('/graphql').set('accept', 'text/html');
    expect(page.status).toBe(401);
    expect(page.text).not.toContain('<html');
  });

  it('tells anonymous callers of /readyz only the status, and a token holder the details', async () => {
    const anonymous = await request(service.url).get('/readyz').expect(200);
    expect(anonymous.body).toEqual({ status: expect.stringMatching(/^(ready|degraded)$/) });
    const { secret } = await service.tokens.create({ name: 'monitor', scope: 'read' });
    const detailed = await request(service.url).get('/readyz').set('authorization', `Bearer ${secret}`).expect(200);
    expect(detailed.body).toMatchObject({ sandbox: false, database: { ok: true }, connectors: { marketo: { mode: 'live' } } });
    await request(service.url).get('/readyz').set('authorization', 'Bearer mds_not-a-token').expect(200, { status: detailed.body.status });
  });

  it('answers /metrics on the service port only with an API token', async () => {
    const refused = await request(service.url).get('/metrics').expect(401);
    expect(refused.text).not.toContain('mds_');
    expect(refused.headers['www-authenticate']).toContain('Bearer');
    const { secret } = await service.tokens.create({ name: 'prometheus', scope: 'read' });
    const scraped = await request(service.url).get('/metrics').set('authorization', `Bearer ${secret}`).expect(200);
    expect(scraped.text).toContain('mds_inbox_events');
    // what each vendor budget holds back and has in flight on this replica (a stuck replica shows here)
    for (const system of ['marketo', 'dynamics']) {
      for (const state of ['waiting', 'in_flight']) expect(scraped.text).toMatch(new RegExp(`mds_vendor_calls\\{system="${system}",state="${state}",service="marketo-dynamics-sync"\\} \\d+`));
    }
    expect(service.metricsUrl).toBeUndefined();
  });
});

describe('a sandbox with METRICS_PORT', () => {
  let sandbox: TestService;
  beforeAll(async () => {
    sandbox = await bootService('pglite', { METRICS_PORT: '0' });
  });
  afterAll(async () => {
    await sandbox?.stop();
  });

  it('serves /metrics on its own listener, without a token, and not on the service port', async () => {
    expect(sandbox.service.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const scraped = await fetch(sandbox.service.metricsUrl!);
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('mds_inbox_events');
    await sandbox.http.get('/metrics').set('authorization', `Bearer ${sandbox.service.graphqlToken}`).expect(404);
  });

  it('serves GraphiQL outside production under a CSP that admits its inline scripts by hash and nothing inline else', async () => {
    const page = await sandbox.http.get('/graphql').set('accept', 'text/html').expect(200);
    const csp = String(page.headers['content-security-policy']);
    const scriptSrc = /script-src ([^;]+)/.exec(csp)?.[1] ?? '';
    expect(scriptSrc).not.toContain("'unsafe-inline'");
    expect(scriptSrc).not.toContain("'unsafe-eval'");
    const inline = [...page.text.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => `'sha256-${createHash('sha256').update(m[1]!).digest('base64')}'`);
    expect(inline.length).toBeGreaterThan(0);
    for (const hash of inline) expect(scriptSrc).toContain(hash);
    // every script and stylesheet is GraphiQL's bundle, served by the service itself
    const external = [...page.text.matchAll(/<(?:script src|link[^>]* href)=([^ >]+)/g)].map((m) => m[1]!);
    expect(external.length).toBeGreaterThan(1);
    for (const src of external) expect(src).toMatch(/^\/graphql\/graphiql\//);
    expect(scriptSrc).toContain("'self'");
    expect(csp).not.toMatch(/https?:/);
    for (const src of external) {
      const asset = await sandbox.http.get(src).expect(200);
      expect(String(asset.headers['content-type'])).toMatch(/javascript|css/);
    }
    // an unknown asset or an encoded path out of the bundle is a plain refusal, not an error
    await sandbox.http.get('/graphql/graphiql/nope.js').expect(401);
    await sandbox.http.get('/graphql/graphiql/..%2f..%2fpackage.json').expect(401);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
  });
});
