// The initial sync at the vendors' real limits and call times (issue 13): a Dynamics org whose
// leads and contacts the service has never seen, half of them already known to Marketo by email.
// The first sweep queues every row (change tracking's initial read); the engine matches each by
// email, creates the persons Marketo lacks, links both and syncs the pair. Timed from the sweep's
// request until every record is linked and nothing waits in the inbox.
import { randomBytes } from 'node:crypto';
import { MAX_BATCH as MARKETO_BATCH, marketoDripPlan } from '../src/connectors/marketo/marketo.client.ts';
import { loadConfig } from '../src/config.ts';
import { apiCalls, callsSince, deployBenchService, realisticVendors, serviceReady } from './webhooks.bench.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Marketo's default daily API quota (reference: 50,000 calls a day per instance) */
const DAILY_QUOTA = 50_000;

export interface InitialSyncResult {
  records: number;
  /** from the sweep's request until every record is linked and the inbox is empty */
  seconds: number;
  marketoCalls: number;
  /** one look-up per 300 emails, one create per 300 missing persons, one read per 300 persons under their lease */
  marketoMinimum: number;
  /** seconds the default Marketo share needs for the minimum */
  minimumSeconds: number;
  dynamicsRequests: number;
  dynamics429: number;
  marketoRefused: number;
  /** share of Marketo's daily quota (50,000 calls) the sync spent */
  dailyQuotaShare: number;
  /** persons in Marketo afterwards, against those expected (the matched ones plus one per missing) */
  persons: number;
  expectedPersons: number;
  /** Dynamics records with no person of their email in Marketo afterwards */
  unmatched: number;
  /** Marketo calls by endpoint: where the calls beyond the minimum went */
  marketoByEndpoint: Record<string, number>;
}

interface SyncStatusAnswer {
  data?: { syncStatus: { backlog: { pending: number; processing: number; failed: number; dead: number }; lastSweep: { status: string } | null } };
}

export async function runInitialSyncBench(options: { records: number; databaseUrl: string | undefined }): Promise<InitialSyncResult> {
  const token = randomBytes(24).toString('base64url');
  const { sims, service, close } = await deployBenchService({
    vendors: realisticVendors,
    pairs: 0,
    databaseUrl: options.databaseUrl,
    // the first sweep is the one this bench requests; the scheduled ones stay off (serviceEnv)
    env: { GRAPHQL_API_TOKEN: token },
  });
  try {
    const half = Math.floor(options.records / 2);
    const row = (i: number) => ({ email: `initial.${i}@example.com`, firstName: 'Initial', lastName: `Person ${i}`, title: i % 3 === 0 ? 'Buyer' : 'Engineer' });
    const dynamicsRow = (i: number, key: 'leadid' | 'contactid') => {
      const r = row(i);
      return { [key]: `00000000-0000-4000-9000-${(i + 1).toString(16).padStart(12, '0')}`, firstname: r.firstName, lastname: r.lastName, emailaddress1: r.email, jobtitle: r.title };
    };
    sims.dataverse.bulkInsert('lead', Array.from({ length: half }, (_, i) => dynamicsRow(i, 'leadid')));
    sims.dataverse.bulkInsert('contact', Array.from({ length: options.records - half }, (_, k) => dynamicsRow(half + k, 'contactid')));
    // every other record is already a Marketo person with the same email
    const known = Array.from({ length: options.records }, (_, i) => i).filter((i) => i % 2 === 1);
    sims.marketo.seedLeads(known.map(row));

    await service.start();
    await serviceReady(service.url);
    const graphql = async <T>(query: string): Promise<T> => {
      const response = await fetch(`${service.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query }),
      });
      return (await response.json()) as T;
    };
    const before = apiCalls(sims);
    const started = performance.now();
    const requested = await graphql<{ data?: { requestSweep: { ok: boolean; message: string } } }>('mutation { requestSweep { ok message } }');
    if (!requested.data?.requestSweep.ok) throw new Error(`the sweep did not start: ${JSON.stringify(requested)}`);
    for (;;) {
      await sleep(1000);
      const status = await graphql<SyncStatusAnswer>('{ syncStatus { backlog { pending processing failed dead } lastSweep { status } } }');
      const s = status.data?.syncStatus;
      if (!s) throw new Error(`syncStatus failed: ${JSON.stringify(status)}`);
      const waiting = s.backlog.pending + s.backlog.processing + s.backlog.failed;
      if (s.lastSweep && s.lastSweep.status !== 'RUNNING' && waiting === 0) break;
    }
    const seconds = (performance.now() - started) / 1000;
    const after = apiCalls(sims);

    const personsByEmail = new Set(sims.marketo.listLeads({ limit: options.records * 2 }).map((p) => String(p['email']).toLowerCase()));
    const unmatched = Array.from({ length: options.records }, (_, i) => row(i).email).filter((email) => !personsByEmail.has(email)).length;
    const creates = options.records - known.length;
    const marketoMinimum = Math.ceil(options.records / MARKETO_BATCH) + Math.ceil(creates / MARKETO_BATCH) + Math.ceil(options.records / MARKETO_BATCH);
    const plan = marketoDripPlan(loadConfig({}).marketo.callsPer20s, 20_000);
    const marketoCalls = after.marketo - before.marketo;
    return {
      records: options.records,
      seconds,
      marketoCalls,
      marketoMinimum,
      minimumSeconds: (Math.max(0, marketoMinimum - plan.bucket) * plan.dripMs + realisticVendors.marketoLatencyMs) / 1000,
      dynamicsRequests: after.dynamics - before.dynamics,
      dynamics429: after.dynamics429 - before.dynamics429,
      marketoRefused: after.marketoRefused - before.marketoRefused,
      dailyQuotaShare: marketoCalls / DAILY_QUOTA,
      persons: sims.marketo.listLeads({ limit: options.records * 2 }).length,
      expectedPersons: options.records,
      unmatched,
      marketoByEndpoint: callsSince(before.marketoByEndpoint, after.marketoByEndpoint),
    };
  } finally {
    await close();
  }
}
