// Webhook intake under load on PostgreSQL (issue 7): autocannon against POST
// /webhooks/marketo/person-changed (valid secret, a new marketoId per request) with the inbox
// worker stopped, beside a bare Express app doing one INSERT per request (pg) in the same run and
// on the same server; then the worker drains the backlog against the simulators.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';
import express from 'express';
import pg from 'pg';
import { createBenchDatabase } from './database.ts';
import { withService, seedLinkedLeads } from './webhooks.bench.ts';

export type IntakeBenchResult =
  | { skipped: string }
  | {
      intakeRps: number;
      baselineRps: number;
      ratio: number;
      intakeP99: number;
      baselineP99: number;
      intakeErrors: number;
      accepted: number;
      stored: number;
      drained: number;
      linkedChanges: number;
      drainSeconds: number;
      drainPerSecond: number;
    };

interface CannonResult {
  rps: number;
  p99: number;
  errors: number;
  ok: number;
}

async function cannon(url: string, headers: Record<string, string>, durationSeconds: number, nextBody: () => string): Promise<CannonResult> {
  const result = await autocannon({
    url,
    method: 'POST',
    connections: 20,
    duration: durationSeconds,
    headers: { 'content-type': 'application/json', ...headers },
    requests: [{ setupRequest: (request) => ({ ...request, body: nextBody() }) }],
  });
  return {
    rps: result.requests.average,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts + result.non2xx,
    ok: result['2xx'],
  };
}

/** The floor: Express, the same JSON parser, one INSERT of the same shape, 202. */
async function baseline(databaseUrl: string, durationSeconds: number): Promise<CannonResult> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  await pool.query(`CREATE SCHEMA IF NOT EXISTS bench_baseline; CREATE TABLE IF NOT EXISTS bench_baseline.events (
    id uuid PRIMARY KEY, "marketoId" int, payload jsonb NOT NULL, "dedupeKey" text UNIQUE NOT NULL, "receivedAt" timestamptz NOT NULL DEFAULT clock_timestamp())`);
  const app = express();
  app.use(express.json({ limit: 512 * 1024 }));
  app.post('/intake', (req, res, next) => {
    const body = req.body as { marketoId: number };
    pool
      .query('INSERT INTO bench_baseline.events (id, "marketoId", payload, "dedupeKey") VALUES (gen_random_uuid(), $1, $2, $3) RETURNING id', [
        body.marketoId,
        JSON.stringify(body),
        `b:${body.marketoId}`,
      ])
      .then((r) => res.status(202).json({ status: 'queued', eventId: (r.rows[0] as { id: string }).id }), next);
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let id = 0;
  try {
    return await cannon(`http://127.0.0.1:${(server.address() as AddressInfo).port}/intake`, {}, durationSeconds, () => JSON.stringify({ marketoId: ++id }));
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await pool.end();
  }
}

export async function runIntakeBench(options: { quick: boolean; databaseUrl: string | undefined }): Promise<IntakeBenchResult> {
  if (!options.databaseUrl) return { skipped: 'no PostgreSQL configured (set BENCH_DATABASE_URL or TEST_DATABASE_URL)' };
  const durationSeconds = options.quick ? 4 : 10;
  const linked = options.quick ? 1_000 : 3_000;
  const database = await createBenchDatabase(options.databaseUrl);
  try {
    const base = await baseline(database.url, durationSeconds);
    return await withService({ DATABASE_URL: database.url, INBOX_BATCH_SIZE: '200' }, async (service) => {
      // linked pairs whose Marketo side changed: the first requests name them, later ones new ids
      const pairs = await seedLinkedLeads({ marketo: service.sandbox!.marketo.admin, dataverse: service.sandbox!.dataverse.admin }, service.db, linked);
      for (const pair of pairs) service.sandbox!.marketo.admin.updateLead(pair.marketoId, { title: 'Changed for the drain' });
      await service.worker.stop();
      let next = 0;
      const ids = pairs.map((p) => p.marketoId);
      const firstNew = Math.max(...ids) + 1_000;
      const intake = await cannon(`${service.url}/webhooks/marketo/person-changed`, { 'x-webhook-secret': service.webhookSecrets.marketo }, durationSeconds, () => {
        const i = next++;
        return JSON.stringify({ marketoId: i < ids.length ? ids[i] : firstNew + i });
      });
      const stored = await service.db.prisma.changeEvent.count();
      const started = performance.now();
      service.worker.start();
      for (;;) {
        const waiting = await service.db.prisma.changeEvent.count({ where: { status: { in: ['PENDING', 'PROCESSING', 'FAILED'] } } });
        if (waiting === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const drainSeconds = (performance.now() - started) / 1000;
      const drained = await service.db.prisma.changeEvent.count({ where: { status: 'DONE' } });
      return {
        intakeRps: intake.rps,
        baselineRps: base.rps,
        ratio: intake.rps / base.rps,
        intakeP99: intake.p99,
        baselineP99: base.p99,
        intakeErrors: intake.errors,
        accepted: intake.ok,
        stored,
        drained,
        linkedChanges: Math.min(linked, stored),
        drainSeconds,
        drainPerSecond: stored / drainSeconds,
      };
    });
  } finally {
    await database.drop();
  }
}
