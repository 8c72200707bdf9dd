import type { Database } from '../db/database.ts';
import type { BatchSync } from '../db/generated/client.ts';
import type { Logger } from '../logger.ts';
import { outcomeForError } from './engine.ts';
import type { LeaseHolder, LeaseTable } from './leases.ts';
import type { MappingService } from './mappings.ts';
import type { LinkedEntity } from './policy.ts';
import type { MarketoPort, PersonRecord } from './ports.ts';
import type { SyncPerson, SyncPersonResult } from './sync-person.ts';

// Batch Sync Person: Marketo's "Sync Person to Microsoft" for a whole static list, which Marketo
// cannot do itself (webhooks fire from trigger campaigns only, reference marketo §14). A job row
// holds the list and a cursor (the list's nextPageToken); a runner on every replica claims a job
// whose lease is free (kept by the replica's lease heartbeat while it runs), reads a page (300 persons, one Marketo call) and puts every person through
// Sync Person, the same journaled, idempotent create as the webhook, many at once: their reads of
// Dynamics share In-filter queries and their creates share $batch requests. The page's outcomes
// and the next cursor are stored together; a crash re-runs at most one page, and Sync Person
// answers "existing" for the persons it already did. Work runs here, never on a request.

export type BatchOutcome = 'created' | 'linked' | 'refused';

/** Sync Person's answer as a batch counts it: the webhook's outcomes, one word each. */
export function batchOutcomeOf(result: SyncPersonResult): { outcome: BatchOutcome; dynamicsId: string | null; message: string | null } | 'busy' {
  switch (result.status) {
    case 'created':
      return { outcome: 'created', dynamicsId: result.dynamicsId, message: null };
    case 'existing':
      return { outcome: 'linked', dynamicsId: result.dynamicsId, message: null };
    case 'busy':
      return 'busy';
    case 'not_found':
    case 'rejected':
      return { outcome: 'refused', dynamicsId: null, message: result.message };
  }
}

export interface BatchSyncRequest {
  listId: number;
  entity: LinkedEntity;
  assignTo?: string | null | undefined;
  /** the token's name, or "cli" */
  requestedBy: string;
}

/** Queues a batch (a job row); a runner on any replica picks it up. */
export function queueBatchSync(prisma: Database['prisma'], request: BatchSyncRequest): Promise<BatchSync> {
  return prisma.batchSync.create({ data: { listId: request.listId, dynamicsEntity: request.entity, assignTo: request.assignTo?.trim() || null, requestedBy: request.requestedBy } });
}

export interface BatchSyncRunnerOptions {
  db: Database;
  marketo: MarketoPort;
  mappings: MappingService;
  syncPerson: SyncPerson;
  logger: Logger;
  owner: string;
  /** the replica's lease heartbeat (sync/leases.ts): renews a job's lease while it runs, stops it if lost */
  leases: LeaseHolder;
  /** a job's lease without a renewal. Default 2 min */
  leaseMs?: number;
  /** list members a page reads: Marketo's maximum, 300, unless a test wants several pages of a short list */
  pageSize?: number;
  /** how often an idle runner looks for a job. Default 2 s */
  pollMs?: number;
  /** tries of a person whose record another call holds, within the page. Default 5 */
  busyTries?: number;
  /**
   * Sync Person calls in flight at once. Their Dynamics look-ups share In-filter reads and their
   * creates share $batch requests, so this is how full those calls are; each call also commits its
   * own transactions, which an embedded database runs one at a time. Default 25
   */
  concurrency?: number;
}

// a stopping runner lets the page in hand finish (its outcomes are saved with the cursor)
const NEVER = new AbortController().signal;

/** Runs `task` over `items`, at most `limit` at once; results in input order. None starts once `signal` aborts. */
async function pooled<T, R>(items: readonly T[], limit: number, signal: AbortSignal, task: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      signal.throwIfAborted();
      const i = next++;
      results[i] = await task(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

export function createBatchSyncRunner(options: BatchSyncRunnerOptions) {
  const { db, marketo, mappings, syncPerson, logger } = options;
  const prisma = db.prisma;
  const leaseMs = options.leaseMs ?? 120_000;
  const pollMs = options.pollMs ?? 2_000;
  let running = false;
  let loop: Promise<void> = Promise.resolve();
  let wake: (() => void) | undefined;

  /** Takes the oldest running job nobody holds (or whose holder's lease ran out). */
  async function claim(): Promise<BatchSync | null> {
    const rows = await prisma.$queryRaw<{ id: string }[]>`
      UPDATE batch_sync SET "leaseOwner" = ${options.owner}, "leaseExpiresAt" = now() + make_interval(secs => ${leaseMs / 1000}::float8), "updatedAt" = now()
       WHERE id = (SELECT id FROM batch_sync
                    WHERE status = 'RUNNING' AND ("leaseExpiresAt" IS NULL OR "leaseExpiresAt" < now() OR "leaseOwner" = ${options.owner})
                    ORDER BY "createdAt" LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING id::text`;
    const id = rows[0]?.id;
    return id ? prisma.batchSync.findUnique({ where: { id } }) : null;
  }

  /** The jobs this replica runs, as the heartbeat renews them: one statement for all. */
  const jobLeases: LeaseTable = {
    name: 'batch_sync',
    leaseMs,
    async renew(ids) {
      const rows = await prisma.$queryRaw<{ id: string }[]>`
        UPDATE batch_sync SET "leaseExpiresAt" = now() + make_interval(secs => ${leaseMs / 1000}::float8)
         WHERE id = ANY(${[...ids]}::uuid[]) AND "leaseOwner" = ${options.owner} AND status = 'RUNNING'
        RETURNING id::text`;
      return new Set(rows.map((r) => r.id));
    },
  };

  /**
   * Every person of a page through Sync Person, many at once. A person busy elsewhere, or whose call
   * failed (a vendor hiccup, a database that could not start its transaction in time), is tried
   * again in the next round: Sync Person finishes its own journaled create, never makes a second.
   * Still failing after the last round, the page fails and is resumed from its cursor later.
   */
  async function syncPage(job: BatchSync, persons: readonly PersonRecord[], signal: AbortSignal) {
    const entity: LinkedEntity = job.dynamicsEntity;
    const tries = options.busyTries ?? 5;
    const outcomes = new Map<number, Exclude<ReturnType<typeof batchOutcomeOf>, 'busy'>>();
    let pending = [...persons];
    for (let attempt = 1; pending.length > 0; attempt++) {
      const results = await pooled(pending, options.concurrency ?? 25, signal, async (person) => {
        try {
          return [person, batchOutcomeOf(await syncPerson({ marketoId: person.id, entity, assignTo: job.assignTo ?? undefined, person }))] as const;
        } catch (error) {
          if (attempt >= tries) throw error;
          return [person, 'busy'] as const;
        }
      });
      pending = [];
      for (const [person, result] of results) {
        if (result !== 'busy') outcomes.set(person.id, result);
        else if (attempt >= tries) outcomes.set(person.id, { outcome: 'refused', dynamicsId: null, message: `person ${person.id} was being synced by another call throughout` });
        else pending.push(person);
      }
    }
    return outcomes;
  }

  /** Stores a page's outcomes and moves the cursor, in one transaction, only while the lease is ours. */
  async function savePage(job: BatchSync, outcomes: Map<number, Exclude<ReturnType<typeof batchOutcomeOf>, 'busy'>>, next: string | null): Promise<boolean> {
    const items = [...outcomes].map(([marketoId, o]) => ({ marketoId, outcome: o.outcome, dynamicsId: o.dynamicsId, message: o.message }));
    return prisma.$transaction(async (tx) => {
      const held = await tx.$queryRaw<unknown[]>`SELECT 1 FROM batch_sync WHERE id = ${job.id}::uuid AND "leaseOwner" = ${options.owner} AND status = 'RUNNING' FOR UPDATE`;
      if (held.length !== 1) return false;
      if (items.length > 0) {
        await tx.$executeRaw`
          INSERT INTO batch_sync_item ("batchId", "marketoId", outcome, "dynamicsId", message)
          SELECT ${job.id}::uuid, i."marketoId", i.outcome, i."dynamicsId", i.message
            FROM jsonb_to_recordset(${JSON.stringify(items)}::jsonb) AS i("marketoId" int, outcome text, "dynamicsId" uuid, message text)
          ON CONFLICT ("batchId", "marketoId") DO UPDATE SET outcome = EXCLUDED.outcome, "dynamicsId" = EXCLUDED."dynamicsId", message = EXCLUDED.message, at = now()`;
      }
      // counts from the items: a page done twice (a crash between the two) counts once
      await tx.$executeRaw`
        UPDATE batch_sync b SET
          pages = b.pages + 1, cursor = ${next}, "updatedAt" = now(),
          persons = c.persons, created = c.created, linked = c.linked, refused = c.refused,
          status = CASE WHEN ${next}::text IS NULL THEN 'DONE'::"BatchSyncStatus" ELSE b.status END,
          "finishedAt" = CASE WHEN ${next}::text IS NULL THEN now() ELSE NULL END,
          "leaseOwner" = CASE WHEN ${next}::text IS NULL THEN NULL ELSE b."leaseOwner" END
          FROM (SELECT count(*)::int AS persons,
                       count(*) FILTER (WHERE outcome = 'created')::int AS created,
                       count(*) FILTER (WHERE outcome = 'linked')::int AS linked,
                       count(*) FILTER (WHERE outcome = 'refused')::int AS refused
                  FROM batch_sync_item WHERE "batchId" = ${job.id}::uuid) c
         WHERE b.id = ${job.id}::uuid`;
      return true;
    });
  }

  /**
   * Runs a claimed job page by page until it ends, is cancelled, or this runner stops, while the
   * heartbeat keeps its lease. A lost lease (a pause past it, or a cancel: the row left RUNNING)
   * stops the page between two persons; the replica that holds the job now resumes from the cursor.
   */
  function runJob(claimed: BatchSync): Promise<void> {
    return options.leases.whileHeld(jobLeases, claimed.id, NEVER, async (signal) => {
      try {
        await runPages(claimed, signal);
      } catch (error) {
        if (!signal.aborted) throw error;
        // not a failure of the batch: whoever holds it now (or nobody, cancelled) decides what follows
        logger.info({ batchSync: claimed.id }, 'batch sync person stopped here: it was cancelled or its lease went to another replica');
      }
    });
  }

  async function runPages(claimed: BatchSync, signal: AbortSignal): Promise<void> {
    const log = logger.child({ batchSync: claimed.id, listId: claimed.listId });
    let job = claimed;
    const bindings = (await mappings.forEntity(job.dynamicsEntity)).bindings;
    if (!marketo.readListPage) throw new Error('the Marketo port reads no static lists');
    while (running) {
      const page = await marketo.readListPage(job.listId, bindings, job.cursor, options.pageSize);
      const outcomes = await syncPage(job, page.persons, signal);
      if (!(await savePage(job, outcomes, page.nextPageToken))) return; // cancelled, or the lease went elsewhere
      const fresh = await prisma.batchSync.findUnique({ where: { id: job.id } });
      if (!fresh || fresh.status !== 'RUNNING') {
        log.info({ status: fresh?.status, persons: fresh?.persons, created: fresh?.created, linked: fresh?.linked, refused: fresh?.refused }, 'batch sync person finished');
        return;
      }
      job = fresh;
    }
  }

  async function fail(job: BatchSync, error: unknown): Promise<void> {
    const outcome = outcomeForError(error);
    const message = outcome.status === 'retry' || outcome.status === 'dead' ? outcome.reason : String(error);
    if (outcome.status === 'dead') {
      // the list is gone, or the vendor refuses for good: no retry would do better
      logger.warn({ err: error, batchSync: job.id }, 'a batch sync person failed');
      await prisma.batchSync.updateMany({ where: { id: job.id, leaseOwner: options.owner }, data: { status: 'FAILED', error: message, finishedAt: new Date(), leaseOwner: null } });
      return;
    }
    // a vendor hiccup: the lease is let go and the job resumes from its cursor after a pause
    logger.warn({ err: error, batchSync: job.id }, 'a page of a batch sync person failed; resumed from its cursor');
    const retryMs = (outcome.status === 'retry' ? outcome.retryAfterMs : undefined) ?? Math.max(pollMs, 5_000);
    await prisma.$executeRaw`
      UPDATE batch_sync SET error = ${message}, "leaseOwner" = NULL, "leaseExpiresAt" = now() + make_interval(secs => ${retryMs / 1000}::float8), "updatedAt" = now()
       WHERE id = ${job.id}::uuid AND "leaseOwner" = ${options.owner}`;
  }

  async function runLoop(): Promise<void> {
    while (running) {
      let job: BatchSync | null = null;
      try {
        job = await claim();
        if (job) await runJob(job);
      } catch (error) {
        if (job) await fail(job, error).catch(() => undefined);
        else logger.error({ err: error }, 'claiming a batch sync person failed');
      }
      if (!job && running) await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  return {
    /** Queues a batch; a runner (on any replica) picks it up. */
    async start(request: BatchSyncRequest): Promise<BatchSync> {
      const job = await queueBatchSync(prisma, request);
      wake?.();
      return job;
    },
    /** Stops a running batch: the runner holding it finds its lease gone at the next heartbeat and starts no further person; what it did stays. */
    async cancel(id: string): Promise<BatchSync | null> {
      const n = await prisma.batchSync.updateMany({ where: { id, status: 'RUNNING' }, data: { status: 'CANCELLED', finishedAt: new Date(), leaseOwner: null } });
      return n.count === 1 ? prisma.batchSync.findUnique({ where: { id } }) : null;
    },
    begin(): void {
      if (running) return;
      running = true;
      loop = runLoop();
    },
    async stop(): Promise<void> {
      running = false;
      wake?.();
      await loop;
    },
  };
}

export type BatchSyncRunner = ReturnType<typeof createBatchSyncRunner>;
