// The real-time path under load: the real service (sandbox mode, both simulators in-process) takes
// webhooks at a fixed rate, half Marketo person-changed calls after a Marketo edit, half Dataverse
// webhook steps after a Dynamics edit, and we time each change until the other system holds it.
import { pino } from 'pino';
import { loadConfig } from '../src/config.ts';
import { startService, type RunningService } from '../src/main.ts';

export interface WebhookBenchResult {
  rate: number;
  changes: number;
  acceptedPerSecond: number;
  p50: number;
  p95: number;
  p99: number;
  lost: number;
  apiCallsPerChange: number;
  marketoCalls: number;
  dynamicsCalls: number;
}

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : NaN);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function withService<T>(env: Record<string, string>, fn: (service: RunningService) => Promise<T>): Promise<T> {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', DATA_DIR: 'memory://', INBOX_POLL_MS: '50', ...env });
  const service = await startService(config, { logger: pino({ level: 'silent' }) });
  try {
    return await fn(service);
  } finally {
    await service.stop('bench done');
  }
}

/** Linked pairs created straight in both simulators and the store, as a finished initial sync leaves them. */
export async function seedLinkedLeads(service: RunningService, count: number): Promise<{ marketoId: number; dynamicsId: string }[]> {
  const sandbox = service.sandbox!;
  const rows = Array.from({ length: count }, (_, i) => ({ firstName: 'Bench', lastName: `Person ${i}`, email: `bench.${i}@example.com`, title: 'Start' }));
  const marketoIds = sandbox.marketo.admin.seedLeads(rows);
  const dynamicsIds = rows.map((_, i) => `00000000-0000-4000-8000-${(i + 1).toString(16).padStart(12, '0')}`);
  sandbox.dataverse.admin.bulkInsert(
    'lead',
    rows.map((r, i) => ({ leadid: dynamicsIds[i], firstname: r.firstName, lastname: r.lastName, emailaddress1: r.email, jobtitle: r.title })),
  );
  const snapshot = (i: number) => ({ email: rows[i]!.email, firstName: 'Bench', lastName: `Person ${i}`, title: 'Start' });
  for (let start = 0; start < count; start += 1000) {
    await service.db.prisma.syncLink.createMany({
      data: marketoIds.slice(start, start + 1000).map((marketoId, k) => ({
        marketoId,
        dynamicsEntity: 'LEAD' as const,
        dynamicsId: dynamicsIds[start + k]!,
        snapshot: snapshot(start + k),
        lastSyncedAt: new Date(),
      })),
    });
  }
  return marketoIds.map((marketoId, i) => ({ marketoId, dynamicsId: dynamicsIds[i]! }));
}

function apiCalls(service: RunningService) {
  const marketo = service.sandbox!.marketo.admin.counters().total;
  const dynamics = Object.entries(service.sandbox!.dataverse.admin.stats())
    .filter(([endpoint]) => !endpoint.includes('token'))
    .reduce((sum, [, c]) => sum + c.calls, 0);
  return { marketo, dynamics };
}

export async function runWebhookBench(options: { rate: number; changes: number; env?: Record<string, string> }): Promise<WebhookBenchResult> {
  return withService(options.env ?? {}, async (service) => {
    const sandbox = service.sandbox!;
    const pairs = await seedLinkedLeads(service, options.changes);
    // warm the token caches and metadata once, as a running service has them
    await fetch(`${service.url}/readyz`);
    const before = apiCalls(service);
    const pending = new Map<number, { check: () => boolean; t0: number }>();
    const latencies: number[] = [];
    let accepted = 0;
    const sends: Promise<void>[] = [];
    const started = performance.now();

    let polling = true;
    let sendEnd = Infinity;
    const poller = (async () => {
      while (polling || pending.size) {
        for (const [i, p] of pending) {
          if (p.check()) {
            latencies.push(performance.now() - p.t0);
            pending.delete(i);
          }
        }
        await sleep(2);
        if (!polling && performance.now() - sendEnd > 30_000) break;
      }
    })();

    for (let i = 0; i < options.changes; i++) {
      const due = started + (i * 1000) / options.rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const pair = pairs[i]!;
      const t0 = performance.now();
      if (i % 2 === 0) {
        const value = `M-${i}`;
        sandbox.marketo.admin.updateLead(pair.marketoId, { title: value });
        pending.set(i, { t0, check: () => sandbox.dataverse.admin.get('lead', pair.dynamicsId)?.jobtitle === value });
        sends.push(
          fetch(`${service.url}/webhooks/marketo/person-changed`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-webhook-secret': service.webhookSecrets.marketo },
            body: JSON.stringify({ marketoId: pair.marketoId }),
          }).then(async (res) => {
            await res.arrayBuffer();
            if (res.ok) accepted++;
          }),
        );
      } else {
        const value = `D-${i}`;
        sandbox.dataverse.admin.update('lead', pair.dynamicsId, { jobtitle: value });
        accepted++; // Dataverse delivers its webhook itself; a refused delivery shows up as lost
        pending.set(i, { t0, check: () => sandbox.marketo.admin.getLead(pair.marketoId)?.title === value });
      }
    }
    await Promise.all(sends);
    sendEnd = performance.now();
    const acceptedPerSecond = accepted / ((sendEnd - started) / 1000);
    polling = false;
    await poller;
    const after = apiCalls(service);
    const sorted = [...latencies].sort((a, b) => a - b);
    const marketoCalls = after.marketo - before.marketo;
    const dynamicsCalls = after.dynamics - before.dynamics;
    return {
      rate: options.rate,
      changes: options.changes,
      acceptedPerSecond,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      lost: pending.size,
      apiCallsPerChange: (marketoCalls + dynamicsCalls) / options.changes,
      marketoCalls,
      dynamicsCalls,
    };
  });
}
