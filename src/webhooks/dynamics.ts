import { Router, type Request, type Response } from 'express';
import { parseDataverseWebhook, type DataverseWebhookNotice } from '../connectors/dynamics/webhook-context.ts';
import { HttpError } from '../http/errors.ts';
import type { InboxIntake } from '../inbox/intake.ts';
import { fanoutEvent } from '../sync/fanout.ts';
import { mergedEvent } from '../sync/merged-records.ts';
import { authenticatedJson } from './auth.ts';
import { requireJson } from './intake.ts';

// Dataverse webhook steps (Create/Update/Delete/Merge of lead and contact; Update of account and
// systemuser, whose changes fan out to the linked persons that show them). Dataverse sends the
// WebhookKey as `?code=`; an `X-Webhook-Secret` header is accepted too (HttpHeader auth). It
// retries once on 502/503/504 only, so every accepted body is in the inbox before we answer. When
// the store cannot keep up, a delivery gets 503 with Retry-After before anything is queued: its
// asynchronous service delivers it again.

export interface DynamicsWebhookDeps {
  inbox: InboxIntake;
  secret: string;
  /** the sync user's id once known: its own writes come back as webhooks and are ignored */
  syncUserId: () => string | undefined;
  /** true when the record is the target of a create the sync journaled and never linked: not an echo to drop */
  unfinishedCreate?: (dynamicsId: string) => Promise<boolean>;
  notify: () => void;
  /** HTTP_BODY_LIMIT_KB in bytes (default 512 KB) */
  bodyLimitBytes?: number;
  /** true for a record on the erasure list: nothing is stored about it (security/suppression.ts) */
  erased?: (dynamicsId: string) => Promise<boolean>;
  /** keeps an echo's columns as the witness of a write whose answer may have been lost (sync/journal.ts) */
  echoed?: (dynamicsId: string, echo: { at: string; columns: Record<string, unknown> }) => Promise<void>;
}

/** what a refused delivery is told to wait, in seconds */
export const OVERLOADED_RETRY_AFTER_S = 5;

const handledMessages = new Set(['Create', 'Update', 'Delete', 'Merge']);
const handledEntities = new Set(['lead', 'contact']);
/** rows persons only show: their company (a contact's account) and their owner (a systemuser) */
const relatedEntities = { account: 'account', systemuser: 'owner' } as const;
const operations = { Create: 'CREATE', Update: 'UPDATE', Delete: 'DELETE' } as const;

type Ingested =
  | { kind: 'invalid'; path: string; message: string }
  | { kind: 'ignored'; reason: string }
  | { kind: 'overloaded' }
  | { kind: 'queued' | 'duplicate'; eventId: string };

export function createDynamicsWebhooks(deps: DynamicsWebhookDeps): Router {
  const router = Router();

  router.use(
    ...authenticatedJson({
      presented: (req) => (typeof req.query.code === 'string' ? req.query.code : req.get('x-webhook-secret')),
      secret: deps.secret,
      refusal: 'missing or wrong WebhookKey (?code=) or X-Webhook-Secret',
      bodyLimitBytes: deps.bodyLimitBytes ?? 512 * 1024,
    }),
  );

  // the request is authenticated (authenticatedJson)
  async function ingest(req: Request): Promise<Ingested> {
    const body = req.body as { MessageName?: unknown; PrimaryEntityName?: unknown } | null;
    if (body && typeof body === 'object' && typeof body.MessageName === 'string' && !handledMessages.has(body.MessageName)) {
      return { kind: 'ignored', reason: `message ${body.MessageName} is not synced` };
    }
    const parsed = parseDataverseWebhook(req.body);
    if (!parsed.ok) {
      const path = parsed.path.startsWith('$') ? parsed.path : `$.${parsed.path}`.replace(/\.\[/g, '[');
      return { kind: 'invalid', path, message: parsed.message };
    }
    const notice = parsed.notice;
    if (notice.entity === 'account' || notice.entity === 'systemuser') return relatedRowChanged(notice, notice.entity);
    if (!handledEntities.has(notice.entity)) return { kind: 'ignored', reason: `table ${notice.entity} is not synced` };
    if (await deps.erased?.(notice.id.toLowerCase())) return { kind: 'ignored', reason: 'the record’s person was erased from this service' };
    if (notice.messageName === 'Merge') return recordsMerged(notice);
    return recordChanged(notice, operations[notice.messageName]);
  }

  /** An account's or a user's Update: fanned out to the persons that show its columns. */
  async function relatedRowChanged(notice: DataverseWebhookNotice, entity: keyof typeof relatedEntities): Promise<Ingested> {
    if (notice.messageName !== 'Update') return { kind: 'ignored', reason: `${notice.messageName} of ${entity} changes no person (only Update fans out)` };
    const id = notice.id.toLowerCase();
    const result = await deps.inbox.enqueue(
      fanoutEvent(
        { kind: relatedEntities[entity], id, changedAttributes: notice.trimmed ? [] : Object.keys(notice.changedAttributes) },
        {
          origin: 'WEBHOOK',
          dedupeKey: `dv:${notice.operationId}:${notice.messageName}:${entity}:${id}`,
          payload: { messageName: notice.messageName, initiatingUserId: notice.initiatingUserId, correlationId: notice.correlationId, operationCreatedOn: notice.operationCreatedOn },
        },
      ),
    );
    return { kind: result.status, eventId: result.id };
  }

  /** The sync never merges: no echo to drop. The master's link (or the subordinate's, moved) syncs next. */
  async function recordsMerged(notice: DataverseWebhookNotice): Promise<Ingested> {
    if (!notice.subordinateId) return { kind: 'invalid', path: '$.InputParameters', message: 'a Merge without a SubordinateId' };
    if (!deps.inbox.admit('dynamics')) return { kind: 'overloaded' };
    const master = notice.id.toLowerCase();
    const result = await deps.inbox.enqueue(
      mergedEvent(
        { side: 'DYNAMICS', entity: notice.entity === 'lead' ? 'LEAD' : 'CONTACT', masterId: master, subordinateId: notice.subordinateId },
        {
          origin: 'WEBHOOK',
          dedupeKey: `dv:${notice.operationId}:Merge:${notice.entity}:${master}`,
          payload: { messageName: 'Merge', initiatingUserId: notice.initiatingUserId, correlationId: notice.correlationId, operationCreatedOn: notice.operationCreatedOn },
        },
      ),
    );
    return { kind: result.status, eventId: result.id };
  }

  /** A lead's or a contact's Create, Update or Delete: queued, unless it is the sync user's own echo. */
  async function recordChanged(notice: DataverseWebhookNotice, operation: (typeof operations)[keyof typeof operations]): Promise<Ingested> {
    const syncUser = deps.syncUserId();
    const id = notice.id.toLowerCase();
    // A Create by the sync user is its own record unless a create it journaled never linked it (a
    // crash between the two): that one must reach the engine. Only Creates are looked up, so the
    // echoes of ordinary updates are not queued; the sweep catches later writes to such a record.
    // An Update echo is kept, in one indexed statement, on the record's write entries still in
    // doubt: the witness of a write whose answer was lost (sync/stale.ts).
    // A plug-in or workflow that the sync's write triggered, running as the sync user, writes one
    // level deeper (Depth > 1): that is a change to carry, not an echo. The merge still makes an
    // echo of ours a no-op if one comes this way.
    const bySyncUser = syncUser !== undefined && notice.initiatingUserId.toLowerCase() === syncUser && notice.depth <= 1;
    if (bySyncUser && !(notice.messageName === 'Create' && (await deps.unfinishedCreate?.(id)) === true)) {
      if (notice.messageName === 'Update') await deps.echoed?.(id, { at: notice.operationCreatedOn, columns: notice.changedAttributes });
      return { kind: 'ignored', reason: 'an echo of the sync user’s own write' };
    }
    if (!deps.inbox.admit('dynamics')) return { kind: 'overloaded' };
    const result = await deps.inbox.enqueue({
      source: 'DYNAMICS',
      origin: 'WEBHOOK',
      operation,
      dynamicsEntity: notice.entity === 'lead' ? 'LEAD' : 'CONTACT',
      dynamicsId: id,
      payload: {
        messageName: notice.messageName,
        changedAttributes: Object.keys(notice.changedAttributes),
        initiatingUserId: notice.initiatingUserId,
        correlationId: notice.correlationId,
        operationCreatedOn: notice.operationCreatedOn,
        depth: notice.depth,
        trimmed: notice.trimmed,
      },
      // The same operation delivered twice (Dataverse's retry, a replay) carries the same ids.
      dedupeKey: `dv:${notice.operationId}:${notice.messageName}:${notice.entity}:${id}`,
    });
    return { kind: result.status, eventId: result.id };
  }

  router.post('/', requireJson, async (req: Request, res: Response) => {
    const outcome = await ingest(req);
    switch (outcome.kind) {
      case 'invalid':
        throw new HttpError(422, 'invalid_body', `${outcome.path}: ${outcome.message}`, { path: outcome.path });
      case 'ignored':
        res.status(202).json({ status: 'ignored', eventId: null, reason: outcome.reason });
        return;
      case 'overloaded':
        res.set('Retry-After', String(OVERLOADED_RETRY_AFTER_S));
        throw new HttpError(503, 'overloaded', 'the service is storing webhooks more slowly than they come; deliver this one again later');
      case 'queued':
      case 'duplicate':
        if (outcome.kind === 'queued') deps.notify();
        res.status(202).json({ status: outcome.kind, eventId: outcome.eventId });
    }
  });

  return router;
}
