import type { ChangeEventStatus, ChangeSource, DynamicsEntity } from '../db/generated/client.ts';
import { inboxStats, type InboxStats } from '../inbox/inbox.ts';
import { completedLastHour } from '../inbox/throughput.ts';
import type { Builder } from './builder.ts';
import { decodeCursor, pageSize, toConnection } from './connection.ts';
import type { IntakeStats } from '../inbox/intake.ts';
import type { ApiUsage } from './context.ts';
import type { Refs } from './refs.ts';

// Sweeps and the Sync Status view: backlog, oldest pending, throughput, last sweep, API usage,
// connector health. Each part of syncStatus is read only when asked for.

interface BacklogGroupRow {
  source: ChangeSource;
  entity: DynamicsEntity | null;
  pending: number;
  processing: number;
  failed: number;
  dead: number;
  oldestWaitingAt: Date | null;
}

export function addRunSchema(builder: Builder, refs: Refs) {
  const { enums } = refs;

  const SyncRunCount = builder.objectRef<{ name: string; value: number }>('SyncRunCount').implement({
    description: "One of a sweep's counters (e.g. scanned, updated, created, failed).",
    fields: (t) => ({ name: t.exposeString('name'), value: t.exposeFloat('value') }),
  });

  refs.SyncRun.implement({
    description: 'One reconciliation sweep.',
    fields: (t) => ({
      id: t.exposeID('id'),
      status: t.field({ type: enums.SyncRunStatus, resolve: (r) => r.status }),
      trigger: t.exposeString('trigger', { description: 'SCHEDULE | OPERATOR | CLI | FULL' }),
      owner: t.exposeString('owner', { description: 'the replica that ran it' }),
      startedAt: t.field({ type: 'DateTime', resolve: (r) => r.startedAt }),
      finishedAt: t.field({ type: 'DateTime', nullable: true, description: 'set when it ends', resolve: (r) => r.finishedAt }),
      counts: t.field({
        type: [SyncRunCount],
        description: 'the numeric counters, by name',
        resolve: (r) =>
          r.counts !== null && typeof r.counts === 'object' && !Array.isArray(r.counts)
            ? Object.entries(r.counts).flatMap(([name, value]) => (typeof value === 'number' ? [{ name, value }] : []))
            : [],
      }),
      countsJson: t.field({ type: 'JSON', description: 'the counters as stored', resolve: (r) => r.counts }),
      notes: t.exposeStringList('notes'),
      error: t.exposeString('error', { nullable: true, description: 'why it failed or stopped early' }),
    }),
  });

  const Backlog = builder.objectRef<InboxStats>('Backlog').implement({
    description: 'Change events not done yet, per status.',
    fields: (t) => ({
      pending: t.exposeInt('pending'),
      processing: t.exposeInt('processing'),
      failed: t.exposeInt('failed', { description: 'waiting for a retry' }),
      dead: t.exposeInt('dead', { description: 'out of retries; replay them with replayChangeEvents' }),
    }),
  });

  const BacklogGroup = builder.objectRef<BacklogGroupRow>('BacklogGroup').implement({
    description: 'The backlog of one source side and Dynamics entity.',
    fields: (t) => ({
      source: t.field({ type: enums.ChangeSource, resolve: (g) => g.source }),
      entity: t.field({ type: enums.DynamicsEntity, nullable: true, description: 'null for events that name only a Marketo person', resolve: (g) => g.entity }),
      pending: t.exposeInt('pending'),
      processing: t.exposeInt('processing'),
      failed: t.exposeInt('failed'),
      dead: t.exposeInt('dead'),
      oldestPendingAgeSeconds: t.float({
        nullable: true,
        description: 'age of the oldest event of this group still waiting (pending, processing or failed); null when none waits',
        resolve: (g) => (g.oldestWaitingAt ? Math.max(0, Date.now() - g.oldestWaitingAt.getTime()) / 1000 : null),
      }),
    }),
  });

  const MarketoUsage = builder.objectRef<ApiUsage['marketo']>('MarketoApiUsage').implement({
    description: "Marketo REST calls today against the instance's daily quota (shared with every other integration).",
    fields: (t) => ({
      callsToday: t.exposeInt('callsToday'),
      dailyQuota: t.exposeInt('dailyQuota'),
      remaining: t.int({ resolve: (u) => Math.max(0, u.dailyQuota - u.callsToday) }),
    }),
  });
  const DynamicsUsage = builder.objectRef<ApiUsage['dynamics']>('DynamicsApiUsage').implement({
    description: 'Dataverse Web API calls made by this replica since it started.',
    fields: (t) => ({ calls: t.exposeInt('calls') }),
  });
  const ApiUsageRef = builder.objectRef<ApiUsage>('ApiUsage').implement({
    description: 'API calls used.',
    fields: (t) => ({
      marketo: t.field({ type: MarketoUsage, resolve: (u) => u.marketo }),
      dynamics: t.field({ type: DynamicsUsage, resolve: (u) => u.dynamics }),
    }),
  });

  const IntakeShedRef = builder.objectRef<{ source: string; count: number }>('IntakeShed').implement({
    description: 'Webhooks of one source this replica refused because its intake queue was full.',
    fields: (t) => ({
      source: t.exposeString('source', { description: 'dynamics (Dataverse delivers it again), marketo_person_changed or marketo_sync_person (lost: the sweep finds the change)' }),
      count: t.exposeInt('count'),
    }),
  });
  const IntakeRef = builder.objectRef<IntakeStats>('Intake').implement({
    description: "This replica's bounded webhook intake (INTAKE_QUEUE_LIMIT): when the store cannot keep up, Dataverse deliveries get 503 with Retry-After, Sync Person queues instead of calling out, and Marketo webhooks are shed only past a reserve.",
    fields: (t) => ({
      queued: t.exposeInt('queued', { description: 'webhooks waiting to be stored now' }),
      limit: t.exposeInt('limit', { description: 'where Dataverse deliveries start to be refused' }),
      overloaded: t.boolean({ resolve: (i) => i.queued >= i.limit }),
      shed: t.field({ type: [IntakeShedRef], description: 'refused since this replica started', resolve: (i) => Object.entries(i.shed).map(([source, count]) => ({ source, count })) }),
    }),
  });

  const ConnectorHealthRef = builder.objectRef<{ name: string; ok: boolean; mode: string; detail: string | null }>('ConnectorHealth').implement({
    description: 'Whether an outside system answers.',
    fields: (t) => ({
      name: t.exposeString('name', { description: 'marketo or dynamics' }),
      ok: t.exposeBoolean('ok'),
      mode: t.exposeString('mode', { description: 'live: the real system; sandbox: the built-in simulator' }),
      detail: t.exposeString('detail', { nullable: true }),
    }),
  });

  refs.SyncStatus.implement({
    description: 'The Sync Status view: is the sync keeping up, and is anything stuck?',
    fields: (t) => ({
      backlog: t.field({ type: Backlog, resolve: (s) => s.inbox() }),
      oldestPendingAgeSeconds: t.float({
        nullable: true,
        description: 'age of the oldest event still waiting (pending, processing or failed); null when none waits',
        resolve: async (s) => {
          const ms = (await s.inbox()).oldestPendingAgeMs;
          return ms === null ? null : Math.round(ms) / 1000;
        },
      }),
      backlogBySource: t.field({
        type: [BacklogGroup],
        description: 'the backlog per source side and Dynamics entity',
        resolve: async (_s, _args, ctx) => {
          // the literal `status <> 'DONE'` lets PostgreSQL read the open events' partial index
          const rows = await ctx.prisma.$queryRaw<{ source: ChangeSource; dynamicsEntity: DynamicsEntity | null; status: ChangeEventStatus; count: number; oldest: Date | null }[]>`
            SELECT source, "dynamicsEntity", status, count(*)::int AS count, min("receivedAt") AS oldest
              FROM change_event WHERE status <> 'DONE' GROUP BY 1, 2, 3`;
          const groups = new Map<string, BacklogGroupRow>();
          for (const row of rows) {
            const key = `${row.source}/${row.dynamicsEntity ?? ''}`;
            const group = groups.get(key) ?? { source: row.source, entity: row.dynamicsEntity, pending: 0, processing: 0, failed: 0, dead: 0, oldestWaitingAt: null };
            const received = row.oldest;
            if (row.status !== 'DEAD' && received && (!group.oldestWaitingAt || received < group.oldestWaitingAt)) group.oldestWaitingAt = received;
            const field = ({ PENDING: 'pending', PROCESSING: 'processing', FAILED: 'failed', DEAD: 'dead' } as const)[row.status as Exclude<ChangeEventStatus, 'DONE'>];
            group[field] += row.count;
            groups.set(key, group);
          }
          return [...groups.values()].sort((a, b) => `${a.source}/${a.entity ?? ''}`.localeCompare(`${b.source}/${b.entity ?? ''}`));
        },
      }),
      lastHourThroughput: t.int({
        description: 'change events completed (DONE) in the last hour (whole minutes)',
        resolve: (_s, _args, ctx) => completedLastHour(ctx.prisma),
      }),
      lastSweep: t.field({
        type: refs.SyncRun,
        nullable: true,
        description: 'the most recent sweep (running or ended)',
        resolve: (_s, _args, ctx) => ctx.prisma.syncRun.findFirst({ orderBy: [{ startedAt: 'desc' }, { id: 'desc' }] }),
      }),
      apiUsage: t.field({ type: ApiUsageRef, resolve: (_s, _args, ctx) => ctx.deps.apiUsage() }),
      intake: t.field({ type: IntakeRef, nullable: true, description: "this replica's webhook intake (another replica may answer the next request)", resolve: (_s, _args, ctx) => ctx.deps.intakeStats?.() ?? null }),
      connectors: t.field({
        type: [ConnectorHealthRef],
        resolve: async (_s, _args, ctx) =>
          Object.entries(await ctx.deps.connectorHealth())
            .map(([name, h]) => ({ name, ok: h.ok, mode: h.mode, detail: h.detail ?? null }))
            .sort((a, b) => a.name.localeCompare(b.name)),
      }),
    }),
  });

  builder.queryFields((t) => ({
    syncRuns: t.field({
      type: refs.connections.SyncRun,
      description: 'Every sweep that ran, newest first.',
      args: {
        status: t.arg({ type: [enums.SyncRunStatus], required: false }),
        first: t.arg.int({ required: false, description: 'page size, 1-100 (default 20)' }),
        after: t.arg.string({ required: false }),
      },
      resolve: async (_root, args, ctx) => {
        const size = pageSize(args.first);
        const after = decodeCursor('run', args.after);
        const rows = await ctx.prisma.syncRun.findMany({
          where: args.status?.length ? { status: { in: [...args.status] } } : {},
          orderBy: [{ startedAt: 'desc' }, { id: 'desc' }],
          take: size + 1,
          ...(after ? { cursor: { id: after }, skip: 1 } : {}),
        });
        return toConnection(rows, size, 'run', (r) => r.id);
      },
    }),
    syncStatus: t.field({
      type: refs.SyncStatus,
      description: 'Backlog, oldest pending age, last-hour throughput, last sweep, API usage and connector health.',
      resolve: (_root, _args, ctx) => {
        let stats: Promise<InboxStats> | undefined;
        return { inbox: () => (stats ??= inboxStats(ctx.prisma)) };
      },
    }),
  }));

  const RequestSweepPayload = builder.objectRef<{ ok: boolean; error: string | null; runId: string | null; message: string }>('RequestSweepPayload').implement({
    description: 'The answer to requestSweep.',
    fields: (t) => ({
      ok: t.exposeBoolean('ok', { description: 'true when a sweep was started (runId set)' }),
      error: t.exposeString('error', { nullable: true, description: 'why none was started (e.g. one is already running)' }),
      runId: t.exposeID('runId', { nullable: true, description: 'the started sweep; follow it with syncRuns' }),
      message: t.exposeString('message'),
    }),
  });

  builder.mutationFields((t) => ({
    requestSweep: t.field({
      type: RequestSweepPayload,
      description: 'Runs a reconciliation sweep now, on the replica that holds the sweep lease.',
      resolve: async (_root, _args, ctx) => {
        const { runId, message } = await ctx.deps.actions.requestSweep();
        return { ok: runId !== null, error: runId === null ? message : null, runId, message };
      },
    }),
  }));
}
