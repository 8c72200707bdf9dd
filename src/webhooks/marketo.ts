import { randomUUID } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { HttpError } from '../http/errors.ts';
import type { NewChangeEvent } from '../inbox/inbox.ts';
import type { InboxIntake } from '../inbox/intake.ts';
import type { Logger } from '../logger.ts';
import type { SyncPerson, SyncPersonResult } from '../sync/sync-person.ts';
import { authenticatedJson } from './auth.ts';
import { firstIssue, requireJson } from './intake.ts';

// Marketo flow-action webhooks. Marketo's JSON token encoding quotes string tokens itself and an
// empty token renders as "" (or nothing), so ids may come as numbers or numeric strings and the
// optional fields as empty strings. Marketo never retries a webhook, so they are accepted while the
// intake's reserve for them lasts; past it one is shed (503, counted: the sweep's leadchanges feed
// finds the change). On an overloaded replica Sync Person queues its work instead of starting it.

// Marketo ids are 32-bit integers (and so is the column that stores them): a larger one is not a
// person, and must be a 422 here rather than a failed insert
const MAX_MARKETO_ID = 2_147_483_647;
const marketoId = z.union([
  z.number().int().positive().max(MAX_MARKETO_ID, { error: `must be a Marketo person id (1 to ${MAX_MARKETO_ID})` }),
  z
    .string()
    .trim()
    .regex(/^\d{1,10}$/, { error: 'must be a Marketo person id (digits)' })
    .transform(Number)
    .refine((id) => id >= 1 && id <= MAX_MARKETO_ID, { error: `must be a Marketo person id (1 to ${MAX_MARKETO_ID})` }),
]);
const optionalText = z
  .union([z.string(), z.null()])
  .optional()
  .transform((v) => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined));

export const syncPersonBodySchema = z.object({
  marketoId,
  syncAs: z
    .union([z.string(), z.null()])
    .optional()
    .transform((v, ctx) => {
      const value = (v ?? '').trim().toLowerCase();
      if (value === '' || value === 'lead') return 'lead' as const;
      if (value === 'contact') return 'contact' as const;
      ctx.addIssue({ code: 'custom', message: 'must be "lead" or "contact"' });
      return z.NEVER;
    }),
  assignTo: optionalText,
});

export const personChangedBodySchema = z.looseObject({ marketoId });

// The extra fields of person-changed are hints only. They are stored flat and printable: jsonb
// refuses \u0000 and lone surrogates, and a deeply nested hint overflows the stack while it is
// serialised, either of which turned a valid call into a 500 (found by test/proof/bad-input).
// eslint-disable-next-line no-control-regex -- \u0000 is exactly what has to go
const unprintable = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const printable = (text: string) => text.replace(unprintable, '\ufffd');

export function storableHints(body: Record<string, unknown>): Record<string, string | number | boolean | null> {
  const hints: Record<string, string | number | boolean | null> = {};
  for (const [key, value] of Object.entries(body).slice(0, 50)) {
    if (value === null || typeof value === 'number' || typeof value === 'boolean') hints[printable(key).slice(0, 100)] = value;
    else if (typeof value === 'string') hints[printable(key).slice(0, 100)] = printable(value).slice(0, 1_000);
  }
  return hints;
}

export interface MarketoWebhookDeps {
  inbox: InboxIntake;
  secret: string;
  syncPerson: SyncPerson;
  logger: Logger;
  /** wakes the inbox worker */
  notify: () => void;
  /** how long sync-person works before it answers "queued" (Marketo gives up at 30 s): SYNC_PERSON_BUDGET_MS */
  syncPersonBudgetMs: number;
  /** person-changed calls for one person within this window collapse while still pending */
  coalesceWindowMs?: number;
  now?: () => number;
  /** HTTP_BODY_LIMIT_KB in bytes (default 512 KB) */
  bodyLimitBytes?: number;
  /** true for a person on the erasure list: nothing is stored about them (security/suppression.ts) */
  erased?: (marketoId: number) => Promise<boolean>;
}

type Ingested =
  | { kind: 'invalid'; path: string; message: string }
  | { kind: 'shed' }
  | { kind: 'erased' }
  | { kind: 'queued' | 'duplicate'; eventId: string };

function shedError(): HttpError {
  return new HttpError(503, 'overloaded', 'the service is storing webhooks more slowly than they come; this call was not stored (the sweep will find the change)');
}

export function createMarketoWebhooks(deps: MarketoWebhookDeps): Router {
  const router = Router();
  const now = deps.now ?? Date.now;
  const window = deps.coalesceWindowMs ?? 10_000;
  router.use(
    ...authenticatedJson({
      presented: (req) => req.get('x-webhook-secret'),
      secret: deps.secret,
      refusal: 'missing or wrong X-Webhook-Secret',
      bodyLimitBytes: deps.bodyLimitBytes ?? 512 * 1024,
    }),
  );

  async function enqueueWithRedelivery(event: NewChangeEvent): Promise<{ kind: 'queued' | 'duplicate'; eventId: string }> {
    const first = await deps.inbox.enqueue(event);
    if (first.status === 'queued') return { kind: 'queued', eventId: first.id };
    // A repeat while the first is still waiting adds nothing (the engine reads the current state).
    // Once the first was picked up, a repeat may carry a newer change: it is queued on its own.
    if (first.pending) return { kind: 'duplicate', eventId: first.id };
    const again = await deps.inbox.enqueue({ ...event, dedupeKey: `${event.dedupeKey}:${randomUUID()}` });
    return { kind: 'queued', eventId: again.id };
  }

  async function ingestPersonChanged(req: Request): Promise<Ingested> {
    const parsed = personChangedBodySchema.safeParse(req.body);
    if (!parsed.success) return { kind: 'invalid', ...firstIssue(parsed.error) };
    const id = parsed.data.marketoId;
    if (await deps.erased?.(id)) return { kind: 'erased' };
    if (!deps.inbox.admit('marketo_person_changed')) return { kind: 'shed' };
    return enqueueWithRedelivery({
      source: 'MARKETO',
      origin: 'WEBHOOK',
      operation: 'UPDATE',
      marketoId: id,
      payload: { ...storableHints(req.body as Record<string, unknown>), marketoId: id },
      dedupeKey: `mkto:changed:${id}:${Math.floor(now() / window)}`,
    });
  }

  router.post('/person-changed', requireJson, async (req: Request, res: Response) => {
    const outcome = await ingestPersonChanged(req);
    switch (outcome.kind) {
      case 'invalid':
        throw new HttpError(422, 'invalid_body', outcome.message, { path: outcome.path });
      case 'shed':
        throw shedError();
      case 'erased':
        res.status(202).json({ status: 'ignored', eventId: null, reason: 'the person was erased from this service' });
        return;
      case 'queued':
      case 'duplicate':
        if (outcome.kind === 'queued') deps.notify();
        res.status(202).json({ status: outcome.kind, eventId: outcome.eventId });
    }
  });

  router.post('/sync-person', requireJson, async (req: Request, res: Response) => {
    const parsed = syncPersonBodySchema.safeParse(req.body);
    if (!parsed.success) throw new HttpError(422, 'invalid_body', firstIssue(parsed.error).message, { path: firstIssue(parsed.error).path });
    const { marketoId: id, syncAs, assignTo } = parsed.data;
    const entity = syncAs === 'contact' ? 'CONTACT' : 'LEAD';
    if (await deps.erased?.(id)) throw new HttpError(422, 'person_erased', 'the person was erased from this service; an admin must lift the erasure (liftErasure) before it syncs again');
    if (!deps.inbox.admit('marketo_sync_person')) throw shedError();

    const queue = async (why: string) => {
      const queued = await enqueueWithRedelivery({
        source: 'MARKETO',
        origin: 'FLOW_ACTION',
        operation: 'SYNC_PERSON',
        marketoId: id,
        payload: { syncAs, ...(assignTo ? { assignTo } : {}), queuedBecause: why },
        dedupeKey: `mkto:sync-person:${id}:${syncAs}:${Math.floor(now() / window)}`,
      });
      deps.notify();
      res.status(202).json({ status: 'queued', marketoId: id, dynamicsEntity: syncAs, eventId: queued.eventId, message: why });
    };

    // an overloaded replica starts no vendor work on the request: the inbox does it when it can
    if (deps.inbox.overloaded()) {
      await queue('this replica is overloaded: the person is queued');
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(resolve, deps.syncPersonBudgetMs, 'timeout');
    });
    const work = deps.syncPerson({ marketoId: id, entity, assignTo });
    let result: SyncPersonResult | 'timeout';
    try {
      result = await Promise.race([work, budget]);
    } catch (error) {
      // Dynamics or Marketo is unavailable: keep the request in the inbox and retry it there.
      deps.logger.warn({ err: error, marketoId: id }, 'sync-person failed now; queued for retry');
      await queue(error instanceof Error ? error.message : String(error));
      return;
    } finally {
      clearTimeout(timer);
    }
    if (result === 'timeout') {
      // The call keeps running under the person's lease; the queued retry finds its link.
      work.catch((error: unknown) => deps.logger.warn({ err: error, marketoId: id }, 'sync-person finished with an error after answering'));
      await queue('the systems are slow: answering before Marketo times out; the person is queued');
      return;
    }
    switch (result.status) {
      case 'created':
      case 'existing':
        res.status(200).json({
          status: result.status,
          marketoId: id,
          dynamicsEntity: result.entity === 'CONTACT' ? 'contact' : 'lead',
          dynamicsId: result.dynamicsId,
        });
        return;
      case 'not_found':
        throw new HttpError(404, 'person_not_found', result.message, { marketoId: id });
      case 'rejected':
        if (result.erased) throw new HttpError(422, 'person_erased', result.message);
        throw new HttpError(422, 'rejected_by_dynamics', result.message, { marketoId: id });
      case 'busy':
        await queue(result.message);
        return;
    }
  });

  return router;
}
