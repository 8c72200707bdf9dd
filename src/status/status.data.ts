import type { Database } from '../db/database.ts';
import type { Readiness } from '../http/health.ts';

// What the status page shows, read in one go: the Sync Status and Sync Errors tabs admins know
// from Marketo's native sync, on one page. Plain values, so the page and /status.json agree.

export interface StatusActivity {
  id: string;
  type: string;
  occurredAt: string;
  marketoId: number | null;
  dynamicsEntity: string | null;
  dynamicsId: string | null;
  message: string | null;
  fields: { field: string; side?: string; winner?: string; rule?: string; newValue?: unknown; losingValue?: unknown; marketoValue?: unknown; dynamicsValue?: unknown }[];
}

export interface StatusData {
  generatedAt: string;
  readiness: Readiness;
  backlog: { pending: number; processing: number; failed: number; dead: number };
  oldestPendingAgeSeconds: number | null;
  lastHourThroughput: number;
  links: Record<string, number>;
  sweeps: { id: string; trigger: string; status: string; startedAt: string; finishedAt: string | null; durationSeconds: number | null; counts: unknown; error: string | null }[];
  collisions: StatusActivity[];
  failures: StatusActivity[];
  stuckEvents: { id: string; status: string; source: string; operation: string; marketoId: number | null; dynamicsId: string | null; attempts: number; reason: string | null; receivedAt: string }[];
}

const FAILURE_TYPES = ['SYNC_FAILED', 'VALIDATION_REJECTED', 'EVENT_DEAD', 'FIELD_SKIPPED'] as const;

export async function collectStatus(db: Database, readiness: () => Promise<Readiness>, now: number = Date.now()): Promise<StatusData> {
  const prisma = db.prisma;
  const activitySelect = { id: true, type: true, occurredAt: true, marketoId: true, dynamicsEntity: true, dynamicsId: true, message: true, fields: true } as const;
  const [ready, groups, oldest, throughput, links, runs, collisions, failures, stuck] = await Promise.all([
    readiness(),
    prisma.changeEvent.groupBy({ by: ['status'], where: { status: { not: 'DONE' } }, _count: { _all: true } }),
    prisma.changeEvent.findFirst({ where: { status: { in: ['PENDING', 'PROCESSING', 'FAILED'] } }, orderBy: { receivedAt: 'asc' }, select: { receivedAt: true } }),
    prisma.changeEvent.count({ where: { status: 'DONE', completedAt: { gte: new Date(now - 3_600_000) } } }),
    prisma.syncLink.groupBy({ by: ['status'], _count: { _all: true } }),
    prisma.syncRun.findMany({ orderBy: { startedAt: 'desc' }, take: 5 }),
    prisma.activity.findMany({ where: { type: 'COLLISION_RESOLVED' }, orderBy: { id: 'desc' }, take: 10, select: activitySelect }),
    prisma.activity.findMany({ where: { type: { in: [...FAILURE_TYPES] } }, orderBy: { id: 'desc' }, take: 10, select: activitySelect }),
    prisma.changeEvent.findMany({ where: { status: { in: ['FAILED', 'DEAD'] } }, orderBy: { receivedAt: 'desc' }, take: 10 }),
  ]);
  const count = (status: string) => groups.find((g) => g.status === status)?._count._all ?? 0;
  const toActivity = (a: (typeof collisions)[number]): StatusActivity => ({
    id: a.id.toString(),
    type: a.type,
    occurredAt: a.occurredAt.toISOString(),
    marketoId: a.marketoId,
    dynamicsEntity: a.dynamicsEntity,
    dynamicsId: a.dynamicsId,
    message: a.message,
    fields: Array.isArray(a.fields) ? (a.fields as StatusActivity['fields']) : [],
  });
  return {
    generatedAt: new Date(now).toISOString(),
    readiness: ready,
    backlog: { pending: count('PENDING'), processing: count('PROCESSING'), failed: count('FAILED'), dead: count('DEAD') },
    oldestPendingAgeSeconds: oldest ? Math.max(0, (now - oldest.receivedAt.getTime()) / 1000) : null,
    lastHourThroughput: throughput,
    links: Object.fromEntries(links.map((l) => [l.status, l._count._all])),
    sweeps: runs.map((r) => ({
      id: r.id,
      trigger: r.trigger,
      status: r.status,
      startedAt: r.startedAt.toISOString(),
      finishedAt: r.finishedAt?.toISOString() ?? null,
      durationSeconds: r.finishedAt ? (r.finishedAt.getTime() - r.startedAt.getTime()) / 1000 : null,
      counts: r.counts,
      error: r.error,
    })),
    collisions: collisions.map(toActivity),
    failures: failures.map(toActivity),
    stuckEvents: stuck.map((e) => ({
      id: e.id,
      status: e.status,
      source: e.source,
      operation: e.operation,
      marketoId: e.marketoId,
      dynamicsId: e.dynamicsId,
      attempts: e.attempts,
      reason: e.lastError,
      receivedAt: e.receivedAt.toISOString(),
    })),
  };
}
