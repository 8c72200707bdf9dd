// Crash recovery (issue 12): the service is killed with SIGKILL while it holds claimed events and
// record leases, and started again on the same database. What counts is how long the work the
// dead process held takes to move again after the restart: the embedded database reclaims it at
// start-up (minimum 0 s), PostgreSQL waits for the dead replica's leases to run out (at most the
// 12 s lease, since nothing renews them any more).
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { deployBenchService, serviceReady } from './webhooks.bench.ts';

export interface RecoveryBenchResult {
  changes: number;
  /** changes not yet in Dynamics when the process died */
  undeliveredAtKill: number;
  /** of those, events the killed process had claimed (PROCESSING; PostgreSQL only) */
  inFlightAtKill: number | null;
  /** from the restarted service answering /readyz to the last undelivered change reaching Dynamics */
  secondsToRecover: number;
  /** the lease after which PostgreSQL hands a dead replica's work to another (0 on PGlite) */
  leaseSeconds: number;
  lost: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runRecoveryBench(options: { changes: number; databaseUrl?: string | undefined }): Promise<RecoveryBenchResult> {
  // A slow Marketo keeps batches in flight long enough to be killed mid-way.
  const { sims, pairs, service, secrets, dataDir, close } = await deployBenchService({ vendors: { marketoLatencyMs: 1_500 }, pairs: options.changes, databaseUrl: options.databaseUrl, env: {} });
  try {
    await service.start();
    await serviceReady(service.url, 50);
    const values = pairs.map((_, i) => `Recovered-${i}`);
    await Promise.all(
      pairs.map((pair, i) => {
        sims.marketo.updateLead(pair.marketoId, { title: values[i]! });
        return fetch(`${service.url}/webhooks/marketo/person-changed`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-webhook-secret': secrets.marketo },
          body: JSON.stringify({ marketoId: pair.marketoId }),
        }).then((r) => r.arrayBuffer());
      }),
    );
    await sleep(2_000);
    await service.kill();
    // PostgreSQL can be asked what the dead process held; the embedded database is left untouched
    // between the two runs, as a crashed single-process install would be.
    let inFlight: number | null = null;
    if (options.databaseUrl) {
      const store = await openDatabase({ url: options.databaseUrl, dataDir });
      try {
        inFlight = (await store.query<{ n: number }>(`SELECT count(*)::int AS n FROM change_event WHERE status = 'PROCESSING'`, []))[0]?.n ?? 0;
      } finally {
        await store.close();
      }
    }
    const delivered = (i: number) => sims.dataverse.get('lead', pairs[i]!.dynamicsId)?.jobtitle === values[i];
    const waiting = pairs.flatMap((_, i) => (delivered(i) ? [] : [i]));
    await service.start();
    await serviceReady(service.url, 50);
    const restarted = performance.now();
    const deadline = restarted + 120_000;
    while (waiting.some((i) => !delivered(i)) && performance.now() < deadline) await sleep(20);
    const secondsToRecover = (performance.now() - restarted) / 1000;
    return {
      changes: options.changes,
      undeliveredAtKill: waiting.length,
      inFlightAtKill: inFlight,
      secondsToRecover,
      leaseSeconds: options.databaseUrl ? loadConfig({}).sync.inboxLeaseSeconds : 0,
      lost: pairs.filter((_, i) => !delivered(i)).length,
    };
  } finally {
    await close();
  }
}
