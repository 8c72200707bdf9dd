import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import { createApp } from '../../src/http/app.ts';
import { createHealth, type ConnectorProbe } from '../../src/http/health.ts';
import { startService } from '../../src/main.ts';
import { projectPaths } from '../../src/paths.ts';
import { freshDatabase, useMigratedDatabase } from '../support/database.ts';

const silent = pino({ level: 'silent' });

describe('the HTTP app', () => {
  let db: Database;
  let draining = false;
  let marketoOk = true;
  const probes: ConnectorProbe[] = [
    { name: 'marketo', check: () => Promise.resolve({ ok: marketoOk, mode: 'sandbox', ...(marketoOk ? {} : { detail: '606 storm' }) }) },
  ];
  const app = () =>
    createApp({
      logger: silent,
      bodyLimitBytes: 1024,
      draining: () => draining,
      authorizeOps: (authorization) => Promise.resolve(authorization === ops),
      health: createHealth({ db, migrationsDir: projectPaths().migrationsDir, sandbox: true, probes, draining: () => draining }),
    });
  const ops = 'Bearer ops-token';

  useMigratedDatabase('pglite', { opened: (opened) => (db = opened) });

  it('answers liveness without touching the database', async () => {
    await request(app()).get('/healthz').expect(200, { status: 'ok' });
  });

  it('answers degraded, not never, while a connector probe waits (a replica that joined holds no budget slice yet)', async () => {
    const waiting: ConnectorProbe = { name: 'dynamics', check: () => new Promise(() => undefined) };
    const stuck = createApp({
      logger: silent,
      bodyLimitBytes: 1024,
      draining: () => false,
      authorizeOps: (authorization) => Promise.resolve(authorization === ops),
      health: createHealth({ db, migrationsDir: projectPaths().migrationsDir, sandbox: true, probes: [...probes, waiting], draining: () => false, probeTimeoutMs: 50 }),
    });
    const res = await request(stuck).get('/readyz').set('authorization', ops).expect(200);
    expect(res.body).toMatchObject({ status: 'degraded', connectors: { marketo: { ok: true }, dynamics: { ok: false } } });
  });

  it('is ready when the database answers and its migrations are current, and says it is a sandbox', async () => {
    const res = await request(app()).get('/readyz').set('authorization', ops).expect(200);
    expect(res.body).toMatchObject({
      status: 'ready',
      sandbox: true,
      database: { ok: true, engine: 'pglite' },
      migrations: { current: true, pending: [] },
      connectors: { marketo: { ok: true } },
    });
    expect(res.body.message).toContain('SANDBOX MODE');
  });

  it('stays in rotation but reports degraded while a connector is unhealthy', async () => {
    marketoOk = false;
    const res = await request(app()).get('/readyz').set('authorization', ops).expect(200);
    const anonymous = await request(app()).get('/readyz').expect(200);
    marketoOk = true;
    expect(anonymous.body).toEqual({ status: 'degraded' });
    expect(res.body).toMatchObject({ status: 'degraded', connectors: { marketo: { ok: false, detail: '606 storm' } } });
  });

  it('is not ready while migrations are pending', async () => {
    const fresh = await freshDatabase('pglite');
    const empty = await fresh.open();
    const unmigrated = createApp({
      logger: silent,
      bodyLimitBytes: 1024,
      draining: () => false,
      authorizeOps: (authorization) => Promise.resolve(authorization === ops),
      health: createHealth({ db: empty, migrationsDir: projectPaths().migrationsDir, sandbox: false, probes: [], draining: () => false }),
    });
    const res = await request(unmigrated).get('/readyz').set('authorization', ops).expect(503);
    await fresh.drop();
    expect(res.body.status).toBe('unavailable');
    expect(res.body.migrations.pending.length).toBeGreaterThan(0);
  });

  it('answers unknown routes, malformed JSON and oversized bodies with JSON errors naming the problem', async () => {
    const missing = await request(app()).get('/nope').expect(404);
    expect(missing.body).toEqual({ error: { code: 'not_found', message: 'no route for GET /nope' } });
    const malformed = await request(app()).post('/webhooks/marketo/person-changed').set('content-type', 'application/json').send('{"marketoId":');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe('malformed_json');
    const huge = await request(app())
      .post('/webhooks/marketo/person-changed')
      .set('content-type', 'application/json')
      .send(JSON.stringify({ pad: 'x'.repeat(2048) }));
    expect(huge.status).toBe(413);
    expect(huge.body.error).toMatchObject({ code: 'payload_too_large' });
  });

  it('refuses intake with 503 and Retry-After while draining, so Dataverse retries elsewhere', async () => {
    draining = true;
    const res = await request(app()).post('/webhooks/dynamics').send({});
    const ready = await request(app()).get('/readyz');
    draining = false;
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(ready.status).toBe(503);
  });

  it('tags every answer with a request id, keeping a sane one the caller sent', async () => {
    const res = await request(app()).get('/healthz').set('x-request-id', 'abc-123');
    expect(res.headers['x-request-id']).toBe('abc-123');
    const generated = await request(app()).get('/healthz').set('x-request-id', 'bad id with spaces');
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('the service', () => {
  it('starts on the embedded database with no other set-up, serves /healthz, and stops cleanly', async () => {
    const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: 'memory://', LOG_LEVEL: 'silent' });
    const service = await startService(config, { logger: silent });
    const health = await fetch(`${service.url}/healthz`);
    expect(health.status).toBe(200);
    const anonymous = (await (await fetch(`${service.url}/readyz`)).json()) as unknown;
    expect(anonymous).toEqual({ status: 'ready' });
    const ready = (await (await fetch(`${service.url}/readyz`, { headers: { authorization: `Bearer ${service.graphqlToken}` } })).json()) as unknown;
    expect(ready).toMatchObject({ status: 'ready', sandbox: true });
    await service.stop('test');
    await expect(fetch(`${service.url}/healthz`)).rejects.toThrow();
    await expect(service.db.prisma.$queryRaw`SELECT 1`).rejects.toThrow();
  });
});
