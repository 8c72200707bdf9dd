import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startDataverseSimulator, type DataverseSimulator } from '../sandbox/dynamics/index.ts';
import { startMarketoSimulator, type StartedMarketoSimulator } from '../sandbox/marketo/index.ts';
import { REJECTED_PREFIX, PLUGIN_REWRITE, sleep } from './model.ts';
import type { LoggedActivity, LoggedField } from './oracle.ts';
import { startReplicaSet, type ReplicaSet } from './replicas.ts';

// The campaign's world: both simulators in this process, a fresh database, the service as child
// processes (replicas on one database, so they can be SIGKILLed and SIGSTOPped), and the calls the
// campaign makes to the service (webhooks as Marketo's flow actions send them, GraphQL for links,
// the backlog, sweeps and the activity log), each to a serving replica.

export interface WorldOptions {
  seed: number;
  databaseUrl?: string | undefined;
  projectRoot: string;
  baseEnv: Record<string, string | undefined>;
  /** seconds; short so that a long retry outlives them (issue 12's lease race) */
  leaseSeconds: number;
  /** service processes on the one database (PGlite: 1, one process by construction) */
  replicas: number;
  /** settings on top of the campaign's (e.g. a longer SHUTDOWN_TIMEOUT_MS) */
  env?: Record<string, string>;
}

export interface WorldCounters {
  webhooksRefused: number;
  webhooksAborted: number;
  sweeps: number;
  acceptedEventIds: Set<string>;
  problems: string[];
}

export type WorldLink = {
  dynamicsEntity: string;
  dynamicsId: string;
  status: string;
  marketoId: string;
  fields?: { field: string; value: string | number | boolean | null; blocked: { side: string } | null }[];
};

/** Both simulators, with the campaign's business rule and the plug-in that rewrites a value on every write. */
async function startSimulators(seed: number) {
  const marketoSim: StartedMarketoSimulator = await startMarketoSimulator({
    seed,
    limits: { callsPerWindow: 100, windowMs: 20_000 },
    webhookTimeoutMs: 30_000,
  });
  const dataverseSim: DataverseSimulator = await startDataverseSimulator({ webhookRetryDelayMs: 200, webhookTimeoutMs: 10_000 });
  const dv = dataverseSim.admin;
  dv.addBusinessRule({ table: 'lead', column: 'jobtitle', kind: 'pattern', pattern: `^(?!${REJECTED_PREFIX}).*$`, message: 'Job title must not start with REJECT (campaign rule)' });
  // a synchronous plug-in normalising countries, on every write including the sync's own
  for (const table of ['lead', 'contact'] as const) dv.addValueRewrite({ table, column: PLUGIN_REWRITE.column, from: PLUGIN_REWRITE.from, to: PLUGIN_REWRITE.to });
  return { marketoSim, dataverseSim };
}

/** A database of its own on the PostgreSQL server of `serverUrl`, for the replicas to share. */
async function createDatabase(serverUrl: string, seed: number): Promise<{ databaseName: string; databaseUrl: string }> {
  const databaseName = `mds_chaos_${seed}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${databaseName}`);
  await admin.end();
  const parsed = new URL(serverUrl);
  parsed.pathname = `/${databaseName}`;
  return { databaseName, databaseUrl: parsed.toString() };
}

/** The environment of every replica: the simulators as both vendors, timeouts short enough for faults to be felt. */
function serviceEnvironment(
  options: WorldOptions,
  world: { marketoSim: StartedMarketoSimulator; dataverseSim: DataverseSimulator; secrets: { marketo: string; dynamics: string; graphql: string }; databaseUrl: string | undefined; dataDir: string },
): Record<string, string> {
  const { marketoSim, dataverseSim, secrets, databaseUrl, dataDir } = world;
  return {
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : { DATA_DIR: dataDir }),
    MARKETO_BASE_URL: marketoSim.url,
    MARKETO_CLIENT_ID: marketoSim.clientId,
    MARKETO_CLIENT_SECRET: marketoSim.clientSecret,
    MARKETO_CALLS_PER_20S: '100',
    DYNAMICS_URL: dataverseSim.url,
    DYNAMICS_TOKEN_URL: dataverseSim.tokenUrl,
    DYNAMICS_TENANT_ID: dataverseSim.tenantId,
    DYNAMICS_CLIENT_ID: dataverseSim.clientId,
    DYNAMICS_CLIENT_SECRET: dataverseSim.clientSecret,
    MARKETO_WEBHOOK_SECRET: secrets.marketo,
    DYNAMICS_WEBHOOK_SECRET: secrets.dynamics,
    GRAPHQL_API_TOKEN: secrets.graphql,
    // the sweep runs when the script asks (after downtime and lost calls, and at the end)
    SYNC_SWEEP_CRON: '0 0 1 1 *',
    SYNC_FULL_CRON: '0 0 1 1 *',
    // faults must be felt within a campaign, not after the vendors' real timeouts
    MARKETO_TIMEOUT_MS: '1500',
    DYNAMICS_TIMEOUT_MS: '1500',
    INBOX_LEASE_SECONDS: String(options.leaseSeconds),
    INBOX_POLL_MS: '50',
    INBOX_MAX_ATTEMPTS: '10',
    SYNC_RECORD_LOCK_SECONDS: String(options.leaseSeconds),
    SHUTDOWN_TIMEOUT_MS: '5000',
    ...options.env,
  };
}

export async function startWorld(options: WorldOptions, counters: WorldCounters) {
  const workDir = await mkdtemp(join(tmpdir(), `mds-chaos-${options.seed}-`));
  // one log per replica; messages name them all
  const logFile = join(workDir, 'service-*.log');
  const { marketoSim, dataverseSim } = await startSimulators(options.seed);
  const mkto = marketoSim.admin;
  const dv = dataverseSim.admin;

  const { databaseName, databaseUrl } = options.databaseUrl ? await createDatabase(options.databaseUrl, options.seed) : { databaseName: undefined, databaseUrl: undefined };
  const dataDir = join(workDir, 'data');
  const secrets = {
    marketo: randomBytes(24).toString('base64url'),
    dynamics: randomBytes(24).toString('base64url'),
    graphql: randomBytes(24).toString('base64url'),
  };
  const replicaCount = databaseUrl ? Math.max(1, options.replicas) : 1;
  const serviceEnv = serviceEnvironment(options, { marketoSim, dataverseSim, secrets, databaseUrl, dataDir });
  const replicas: ReplicaSet = await startReplicaSet({
    count: replicaCount,
    processOptions: (index, port) => ({
      projectRoot: options.projectRoot,
      baseEnv: options.baseEnv,
      port,
      logFile: join(workDir, `service-${index}.log`),
      env: serviceEnv,
    }),
  });
  // Dataverse delivers to the balancer in front of the replicas
  dv.registerWebhook({
    url: `${replicas.frontUrl}/webhooks/dynamics`,
    authType: 'WebhookKey',
    authValue: secrets.dynamics,
    entities: ['lead', 'contact'],
    messages: ['Create', 'Update', 'Delete'],
    postImage: true,
  });

  async function graphql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const replica = await replicas.anyServing();
    const response = await fetch(`${replica.process.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${secrets.graphql}` },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(30_000),
    });
    const body = (await response.json()) as { data?: T; errors?: { message: string }[] };
    if (!body.data || body.errors?.length) throw new Error(`GraphQL failed: ${JSON.stringify(body.errors)}`);
    return body.data;
  }

  /** A Marketo flow-action call; `abortAfterMs` plays Marketo giving up before the answer. */
  async function marketoWebhook(path: 'person-changed' | 'sync-person', body: unknown, abortAfterMs?: number): Promise<{ status: number; body: Record<string, unknown> } | 'refused' | 'aborted'> {
    // Marketo calls the deployment's one address; the balancer picks a serving replica
    const replica = replicas.pick();
    if (!replica) {
      counters.webhooksRefused++;
      return 'refused';
    }
    try {
      const response = await fetch(`${replica.process.url}/webhooks/marketo/${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-webhook-secret': secrets.marketo },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(abortAfterMs ?? 30_000),
      });
      const json = (await response.json().catch(() => ({}))) as Record<string, unknown>;
      if (response.status >= 200 && response.status < 300 && typeof json['eventId'] === 'string') counters.acceptedEventIds.add(json['eventId']);
      return { status: response.status, body: json };
    } catch (error) {
      if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
        counters.webhooksAborted++;
        return 'aborted';
      }
      counters.webhooksRefused++;
      return 'refused';
    }
  }

  async function backlog(): Promise<{ pending: number; processing: number; failed: number; dead: number }> {
    const data = await graphql<{ syncStatus: { backlog: { pending: number; processing: number; failed: number; dead: number } } }>(
      '{ syncStatus { backlog { pending processing failed dead } } }',
    );
    return data.syncStatus.backlog;
  }

  async function settle(label: string, timeoutMs = 240_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let quiet = 0;
    while (Date.now() < deadline) {
      await dv.flushWebhooks();
      const b = await backlog();
      quiet = b.pending + b.processing + b.failed === 0 ? quiet + 1 : 0;
      if (quiet >= 3) return;
      await sleep(100);
    }
    throw new Error(`${label}: the inbox did not settle within ${timeoutMs / 1000} s (${JSON.stringify(await backlog())}); see ${logFile}`);
  }

  /** Waits until the service is working on something (a claimed event), at most `maxMs`. */
  async function waitForWork(maxMs: number): Promise<boolean> {
    const deadline = Date.now() + maxMs;
    while (Date.now() < deadline) {
      const b = await backlog().catch(() => undefined);
      if (b && b.processing > 0) return true;
      await sleep(10);
    }
    return false;
  }

  async function sweep(label: string): Promise<void> {
    const requested = await graphql<{ requestSweep: { ok: boolean; runId: string | null; message: string; error: string | null } }>(
      'mutation { requestSweep { ok runId message error } }',
    );
    if (!requested.requestSweep.ok || !requested.requestSweep.runId) throw new Error(`${label}: the sweep did not start: ${JSON.stringify(requested.requestSweep)}`);
    counters.sweeps++;
    const runId = requested.requestSweep.runId;
    const deadline = Date.now() + 240_000;
    for (;;) {
      const runs = await graphql<{ syncRuns: { edges: { node: { id: string; status: string; finishedAt: string | null; error: string | null } }[] } }>(
        '{ syncRuns(first: 5) { edges { node { id status finishedAt error } } } }',
      );
      const run = runs.syncRuns.edges.map((e) => e.node).find((r) => r.id === runId);
      if (run?.finishedAt) {
        if (run.status !== 'SUCCEEDED') counters.problems.push(`${label}: sweep ${runId} ended ${run.status}: ${run.error ?? ''}`);
        break;
      }
      if (Date.now() > deadline) throw new Error(`${label}: sweep ${runId} did not finish in 240 s`);
      await sleep(200);
    }
    await settle(`${label} (after the sweep)`);
  }

  async function linkOf(ids: { marketoId?: number; dynamicsId?: string }): Promise<WorldLink | null> {
    const data = await graphql<{ link: WorldLink | null }>(
      'query($m: ID, $d: ID) { link(marketoId: $m, dynamicsId: $d) { marketoId dynamicsEntity dynamicsId status } }',
      { m: ids.marketoId === undefined ? null : String(ids.marketoId), d: ids.dynamicsId ?? null },
    );
    return data.link;
  }

  /** The whole activity log, oldest first, as the oracle reads it. */
  async function activities(): Promise<LoggedActivity[]> {
    type Node = { id: string; type: string; occurredAt: string; marketoId: string | null; dynamicsEntity: 'LEAD' | 'CONTACT' | null; message: string | null; fields: LoggedField[] };
    const all: LoggedActivity[] = [];
    let after: string | null = null;
    for (;;) {
      const page: { activities: { edges: { cursor: string; node: Node }[]; pageInfo: { hasNextPage: boolean } } } = await graphql(
        `query($after: String) { activities(first: 40, after: $after) {
          edges { cursor node { id type occurredAt marketoId dynamicsEntity message
            fields { field side oldValue newValue baseValue losingValue marketoValue dynamicsValue winner rule } } }
          pageInfo { hasNextPage } } }`,
        { after },
      );
      for (const { node } of page.activities.edges) {
        all.push({ id: node.id, type: node.type, at: Date.parse(node.occurredAt), marketoId: node.marketoId === null ? null : Number(node.marketoId), dynamicsEntity: node.dynamicsEntity, message: node.message, fields: node.fields });
      }
      if (!page.activities.pageInfo.hasNextPage || page.activities.edges.length === 0) break;
      after = page.activities.edges.at(-1)!.cursor;
    }
    return all.reverse();
  }

  return {
    workDir,
    logFile,
    dataDir,
    databaseUrl,
    databaseName,
    marketoSim,
    dataverseSim,
    mkto,
    dv,
    replicas,
    graphql,
    marketoWebhook,
    backlog,
    settle,
    waitForWork,
    sweep,
    linkOf,
    activities,
  };
}

export type World = Awaited<ReturnType<typeof startWorld>>;
