import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { DataverseClientStats } from '../connectors/dynamics/dataverse.client.ts';
import type { MarketoClientStats } from '../connectors/marketo/marketo.client.ts';
import type { Database } from '../db/database.ts';
import type { IntakeStats } from '../inbox/intake.ts';

// Prometheus metrics on a registry of this app's own (no global default registry: tests boot
// several services in one process). Counters of what this replica did (intake, engine outcomes,
// API calls) are kept in memory; the shared state (inbox depth and age, sweeps, activity rates)
// is read from the database on scrape, so every replica reports the same numbers for it.

export interface MetricsOptions {
  db: Database;
  marketoStats: () => MarketoClientStats;
  dataverseStats: () => DataverseClientStats;
  /** the bounded intake queue of this replica (src/inbox/intake.ts) */
  intakeStats?: () => IntakeStats;
  /** this replica's vendor calls held back by the budget, and in flight (service/vendors.ts) */
  vendorQueues?: () => Record<'marketo' | 'dynamics', { waiting: number; inFlight: number }>;
  /** process metrics (CPU, memory, event loop lag); off in tests that boot many services */
  processMetrics?: boolean;
  now?: () => number;
}

export type IntakeSource = 'marketo_sync_person' | 'marketo_person_changed' | 'dynamics' | 'unknown';

function intakeSource(path: string): IntakeSource {
  if (path.startsWith('/marketo/sync-person')) return 'marketo_sync_person';
  if (path.startsWith('/marketo/person-changed')) return 'marketo_person_changed';
  if (path.startsWith('/dynamics')) return 'dynamics';
  return 'unknown';
}

/** The outcome label of a webhook answer: the `status` the body names on success, else by HTTP status. */
export function intakeOutcome(statusCode: number, body: unknown): string {
  if (statusCode < 300) {
    const status = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)['status'] : undefined;
    return typeof status === 'string' && /^[a-z_]{1,32}$/.test(status) ? status : 'accepted';
  }
  if (statusCode === 401) return 'unauthorized';
  if (statusCode === 404) return 'not_found';
  if (statusCode === 413) return 'too_large';
  if (statusCode === 415) return 'unsupported_media_type';
  if (statusCode === 400 || statusCode === 422) return 'invalid';
  if (statusCode === 503) return 'unavailable';
  return statusCode >= 500 ? 'error' : 'rejected';
}

/**
 * This replica's vendor calls: held back by the budget (waiting) and sent but not answered (in
 * flight). Calls waiting for minutes with none in flight is a replica that cannot get budget; calls
 * in flight longer than the client timeout is a call that never ended.
 */
function registerVendorQueueGauge(registry: Registry, vendorQueues: NonNullable<MetricsOptions['vendorQueues']>): void {
  new Gauge({
    name: 'mds_vendor_calls',
    help: "This replica's vendor calls by state: waiting for the deployment's budget, or in flight",
    labelNames: ['system', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [system, q] of Object.entries(vendorQueues())) {
        this.set({ system, state: 'waiting' }, q.waiting);
        this.set({ system, state: 'in_flight' }, q.inFlight);
      }
    },
  });
}

/** This replica's bounded intake queue: how full it is and what it refused. */
function registerIntakeGauges(registry: Registry, intakeStats: () => IntakeStats): void {
  new Gauge({
    name: 'mds_intake_queued',
    help: 'Webhooks waiting to be stored on this replica (bounded by INTAKE_QUEUE_LIMIT)',
    registers: [registry],
    collect() {
      this.set(intakeStats().queued);
    },
  });
  new Gauge({
    name: 'mds_intake_shed_total',
    help: 'Webhooks this replica refused because its intake queue was full, by source (dynamics: redelivered by Dataverse; marketo_*: lost, the sweep finds the change)',
    labelNames: ['source'] as const,
    registers: [registry],
    collect() {
      for (const [source, count] of Object.entries(intakeStats().shed)) this.set({ source }, count);
    },
  });
}

/** The state every replica shares, read from the database on scrape: inbox depth and age, activity rates, sweeps. */
function registerSharedStateGauges(registry: Registry, db: Database, now: () => number): void {
  new Gauge({
    name: 'mds_inbox_events',
    help: 'Change events in the inbox that are not done, by status (shared by every replica)',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      const groups = await db.prisma.changeEvent.groupBy({ by: ['status'], where: { status: { not: 'DONE' } }, _count: { _all: true } });
      this.reset();
      for (const status of ['PENDING', 'PROCESSING', 'FAILED', 'DEAD'] as const) {
        this.set({ status: status.toLowerCase() }, groups.find((g) => g.status === status)?._count._all ?? 0);
      }
    },
  });
  new Gauge({
    name: 'mds_inbox_oldest_pending_age_seconds',
    help: 'Age of the oldest change event still waiting (pending, processing or failed); 0 when none waits',
    registers: [registry],
    async collect() {
      const oldest = await db.prisma.changeEvent.findFirst({
        where: { status: { in: ['PENDING', 'PROCESSING', 'FAILED'] } },
        orderBy: { receivedAt: 'asc' },
        select: { receivedAt: true },
      });
      this.set(oldest ? Math.max(0, (now() - oldest.receivedAt.getTime()) / 1000) : 0);
    },
  });
  new Gauge({
    name: 'mds_activities_last_hour',
    help: 'Activity log entries written in the last hour, by type (COLLISION_RESOLVED, VALIDATION_REJECTED, SYNC_FAILED, ...)',
    labelNames: ['type'] as const,
    registers: [registry],
    async collect() {
      const groups = await db.prisma.activity.groupBy({ by: ['type'], where: { occurredAt: { gte: new Date(now() - 3_600_000) } }, _count: { _all: true } });
      this.reset();
      for (const g of groups) this.set({ type: g.type }, g._count._all);
    },
  });
  new Gauge({
    name: 'mds_sweep_last_duration_seconds',
    help: 'Duration of the most recent finished reconciliation sweep, labelled by its status and trigger',
    labelNames: ['status', 'trigger'] as const,
    registers: [registry],
    async collect() {
      const run = await db.prisma.syncRun.findFirst({ where: { finishedAt: { not: null } }, orderBy: { startedAt: 'desc' } });
      this.reset();
      if (run?.finishedAt) this.set({ status: run.status, trigger: run.trigger }, (run.finishedAt.getTime() - run.startedAt.getTime()) / 1000);
    },
  });
  new Gauge({
    name: 'mds_sweep_last_success_timestamp_seconds',
    help: 'When the most recent successful sweep finished (Unix seconds); 0 when none has',
    registers: [registry],
    async collect() {
      const run = await db.prisma.syncRun.findFirst({ where: { status: 'SUCCEEDED' }, orderBy: { startedAt: 'desc' }, select: { finishedAt: true } });
      this.set(run?.finishedAt ? run.finishedAt.getTime() / 1000 : 0);
    },
  });
}

/** Calls to each vendor, as the clients count them. */
function registerApiCallMetrics(registry: Registry, options: Pick<MetricsOptions, 'marketoStats' | 'dataverseStats'>): void {
  // The clients count their own calls; these counters mirror those totals at each scrape.
  new Counter({
    name: 'mds_api_calls_total',
    help: 'Calls this replica made to each system since it started',
    labelNames: ['system'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ system: 'marketo' }, options.marketoStats().calls);
      this.inc({ system: 'dynamics' }, options.dataverseStats().totalCalls);
    },
  });
  new Counter({
    name: 'mds_api_errors_total',
    help: 'Failed calls to each system since this replica started, by vendor code (Marketo: 606, 601, ...; Dynamics: all errors as "any")',
    labelNames: ['system', 'code'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [code, count] of Object.entries(options.marketoStats().errors)) this.inc({ system: 'marketo', code }, count);
      const dynamicsErrors = options.dataverseStats().totalErrors;
      if (dynamicsErrors > 0) this.inc({ system: 'dynamics', code: 'any' }, dynamicsErrors);
    },
  });
  new Counter({
    name: 'mds_api_retries_total',
    help: 'Retried calls to each system since this replica started',
    labelNames: ['system'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ system: 'marketo' }, options.marketoStats().retries);
      const dynamics = options.dataverseStats();
      this.inc({ system: 'dynamics' }, Object.values(dynamics.endpoints).reduce((sum, e) => sum + e.retries, 0));
    },
  });
  new Gauge({
    name: 'mds_marketo_daily_calls',
    help: "Marketo calls the whole deployment made today against the quota, as this replica last heard (resets 00:00 US Central)",
    registers: [registry],
    collect() {
      this.set(options.marketoStats().dailyCalls);
    },
  });
}

export function createMetrics(options: MetricsOptions) {
  const { db } = options;
  const now = options.now ?? Date.now;
  const registry = new Registry();
  registry.setDefaultLabels({ service: 'marketo-dynamics-sync' });
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  const intake = new Counter({
    name: 'mds_webhook_intake_total',
    help: 'Webhook calls answered, by source (marketo_sync_person, marketo_person_changed, dynamics) and outcome (queued, duplicate, ignored, created, existing, unauthorized, invalid, ...)',
    labelNames: ['source', 'outcome'] as const,
    registers: [registry],
  });
  const outcomes = new Counter({
    name: 'mds_engine_outcomes_total',
    help: 'Change events finished by the inbox worker of this replica, by outcome (done, retry, dead, busy)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });

  const pruned = new Counter({
    name: 'mds_retention_removed_total',
    help: 'Rows deleted by retention passes on this replica, by table (change_event, activity, sync_run, audit_entry)',
    labelNames: ['table'] as const,
    registers: [registry],
  });
  const lastPrune = new Gauge({
    name: 'mds_retention_last_pass_timestamp_seconds',
    help: 'When this replica last finished a retention pass (Unix seconds); 0 when it has not',
    registers: [registry],
  });

  if (options.intakeStats) registerIntakeGauges(registry, options.intakeStats);
  if (options.vendorQueues) registerVendorQueueGauge(registry, options.vendorQueues);
  registerSharedStateGauges(registry, db, now);
  registerApiCallMetrics(registry, options);

  /** Counts each webhook answer by source and outcome; mount on /webhooks before the routers. */
  const intakeMiddleware: RequestHandler = (req: Request, res: Response, next: NextFunction) => {
    const source = intakeSource(req.path);
    let body: unknown;
    const json = res.json.bind(res);
    res.json = (value: unknown) => {
      body = value;
      return json(value);
    };
    res.on('finish', () => intake.inc({ source, outcome: intakeOutcome(res.statusCode, body) }));
    next();
  };

  return {
    registry,
    intakeMiddleware,
    /** the inbox worker reports each event's outcome here */
    recordOutcome(outcome: 'done' | 'retry' | 'dead' | 'busy'): void {
      outcomes.inc({ outcome });
    },
    /** each retention pass reports what it removed here */
    recordPrune(result: { at: Date; removed: Record<string, number> }): void {
      for (const [table, count] of Object.entries(result.removed)) pruned.inc({ table }, count);
      lastPrune.set(result.at.getTime() / 1000);
    },
    /** GET /metrics */
    handler: (async (_req: Request, res: Response) => {
      res.setHeader('content-type', registry.contentType);
      res.setHeader('cache-control', 'no-store');
      res.send(await registry.metrics());
    }) as RequestHandler,
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
