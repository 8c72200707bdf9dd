import type { z } from 'zod';
import type { WriteFence } from '../../sync/ports.ts';
import { admittedEachTry, createRideAlong, NothingToSend, type FillPolicy } from '../ride-along.ts';
import { MarketoApiError } from './marketo.errors.ts';
import { chunk, followLeadPages, leadQuery, MAX_BATCH } from './marketo.endpoints.ts';
import { parseResult, type MarketoCall } from './marketo.transport.ts';
import { syncResultSchema, type MarketoEnvelope, type MarketoLead } from './marketo.schemas.ts';

// Reads by id, look-ups by email and writes of concurrent callers share Marketo calls (ride-along.ts),
// filled when the budget admits them. Calls are what Marketo's budget counts, not records: a call
// that a burst or the call feeding it is about to fill waits up to a second for it, so the idle
// bucket is not spent on a burst's first few records. A steady load that would not fill a call
// within that second is never held (at 100 changes/s a read carries ~80). What feeds what: a read by
// id becomes a write of the merged values, a look-up's new persons a create, a look-up's matches and
// the created persons reads by id. Creates wait longer, for the look-up after next: an initial sync's
// look-up of 300 emails finds ~150 new persons, and the next look-up answers a drip or two later.

export type MarketoSyncAction = 'createOrUpdate' | 'updateOnly' | 'createOnly';
export type MarketoSyncResult = z.infer<typeof syncResultSchema>;

/** how long a part-full call may wait to fill (see FillPolicy); `false` sends every call at once */
export type MarketoFill = { maxHoldMs: number; rateWindowMs: number } | false;

// A call takes whole requests, so a read request rides in pieces this small: a call then fills to
// within a piece of its 300 (a piece's answer stands alone, unlike a write's results by position).
// Whole batches of ~30 left reads ~20 short, two extra reads in a burst of 10,000.
const READ_PIECE = 10;

type SyncBatchKey = { action: MarketoSyncAction; lookupField: 'id' | 'email'; partitionName?: string };
const isCreate = (syncKey: string) => (JSON.parse(syncKey) as SyncBatchKey).action === 'createOnly';

function fillPolicies(fill: MarketoFill | undefined) {
  const fillOptions = fill === false ? undefined : (fill ?? { maxHoldMs: 1000, rateWindowMs: 1000 });
  const policy = (feeding: (key: string) => number, holdFactor: (key: string) => number = () => 1): FillPolicy | undefined =>
    fillOptions && {
      ...fillOptions,
      maxHoldMs: (key) => fillOptions.maxHoldMs * holdFactor(key),
      feeding,
      now: () => performance.now(),
      after: (ms, fn) => {
        const timer = setTimeout(fn, ms);
        return () => clearTimeout(timer);
      },
    };
  return { policy, maxHoldMs: fillOptions?.maxHoldMs ?? 0 };
}

/** One look-up call carrying every rider's values, and the pages after it. */
async function readLeads(call: MarketoCall, filterType: 'id' | 'email', fieldList: string, bind: () => string[]): Promise<Map<number, MarketoLead>> {
  const fields = fieldList === '' ? undefined : fieldList.split(',');
  let values: string[] = [];
  const first = await call({ endpoint: 'leads.query', method: 'GET', build: () => leadQuery(filterType, (values = [...new Set(bind())]), fields) });
  const leads = new Map<number, MarketoLead>();
  await followLeadPages(call, first, (token) => leadQuery(filterType, values, fields, token), leads);
  return leads;
}

/** One leads.sync call, its records taken (and their fences checked) before each try. */
async function sendSyncBatch(call: MarketoCall, key: string, bind: () => void, admit: () => Promise<Record<string, unknown>[]>): Promise<MarketoSyncResult[]> {
  const { action, lookupField, partitionName } = JSON.parse(key) as SyncBatchKey;
  let input: Record<string, unknown>[] = [];
  const admitted = admittedEachTry(bind, admit);
  let envelope: MarketoEnvelope;
  try {
    envelope = await call({
      endpoint: 'leads.sync',
      method: 'POST',
      // built again before each resend: a record whose work lost its lease meanwhile leaves the call
      everyAttempt: true,
      build: async () => {
        input = await admitted();
        if (input.length === 0) return null;
        return {
          endpoint: 'leads.sync',
          method: 'POST',
          path: '/rest/v1/leads.json',
          body: { action, lookupField, ...(partitionName === undefined ? {} : { partitionName }), input },
          recordsSent: input.length,
          // Marketo has no conditional write: a try that may have landed is never sent again
          // blindly (a createOnly would report 1005 for our own lead, an update could overwrite
          // an edit made since); marketo.retry.ts leaves it to the caller, who reads again first
          idempotent: false,
        };
      },
    });
  } catch (error) {
    if (error instanceof NothingToSend) return [];
    throw error;
  }
  const results = parseResult(syncResultSchema, envelope, 'leads.sync');
  if (results.length !== input.length) {
    throw new MarketoApiError('permanent', { message: `sent ${input.length} records, got ${results.length} results`, endpoint: 'leads.sync', httpStatus: 200 });
  }
  return results;
}

export function createMarketoBatching(call: MarketoCall, fill: MarketoFill | undefined) {
  const { policy, maxHoldMs } = fillPolicies(fill);

  const idReads = createRideAlong<number, Map<number, MarketoLead>>({
    maxItems: MAX_BATCH,
    fill: policy((): number => emailReads.carrying() + syncBatches.carrying(isCreate)),
    send: (fieldList, bind) => readLeads(call, 'id', fieldList, () => bind().map(String)),
  });
  // Look-ups by email share calls the same way (the initial sync matches every Dynamics record by
  // email): a call answers for every email it carried, each caller keeps what it asked for.
  const emailReads = createRideAlong<string, MarketoLead[]>({
    maxItems: MAX_BATCH,
    fill: policy(() => 0),
    send: async (fieldList, bind) => [...(await readLeads(call, 'email', fieldList, bind)).values()],
  });
  const syncBatches = createRideAlong<Record<string, unknown>, MarketoSyncResult[]>({
    maxItems: MAX_BATCH,
    fill: policy(
      (key): number => (isCreate(key) ? emailReads.carrying(undefined, 2 * maxHoldMs) : idReads.carrying()),
      (key) => (isCreate(key) ? 2 : 1),
    ),
    send: (key, bind, admit) => sendSyncBatch(call, key, bind, admit),
  });

  return {
    /** `onSent` is told once every call carrying these ids has been admitted and sent. */
    async getLeadsByIds(ids: readonly number[], fields?: readonly string[], onSent?: () => void): Promise<MarketoLead[]> {
      const key = fields?.join(',') ?? '';
      const unique = [...new Set(ids)];
      const answers = await idReads.rideInPieces(key, unique, READ_PIECE, onSent);
      return unique.flatMap((id) => answers.find((leads) => leads.has(id))?.get(id) ?? []);
    },

    /**
     * Persons whose email is one of `emails` (any case), read together with other callers' look-ups;
     * each caller gets the persons of its own emails.
     */
    async getLeadsByEmail(emails: readonly string[], fields?: readonly string[]): Promise<MarketoLead[]> {
      // the email comes back with every person, so a shared answer can be told apart
      const key = fields ? [...new Set([...fields, 'email'])].join(',') : '';
      const asked = [...new Set(emails.map((e) => e.toLowerCase()))];
      const answers = await emailReads.rideInPieces(key, asked, READ_PIECE);
      const wanted = new Set(asked);
      const leads = answers.flat().filter((lead) => typeof lead.email === 'string' && wanted.has(lead.email.toLowerCase()));
      return [...new Map(leads.map((lead) => [lead.id, lead])).values()];
    },

    async syncLeads(params: {
      action: MarketoSyncAction;
      lookupField: 'id' | 'email';
      input: readonly Record<string, unknown>[];
      partitionName?: string;
      /** the work's proof that it still holds its records' leases, checked right before each send */
      fence?: WriteFence | undefined;
    }): Promise<MarketoSyncResult[]> {
      const key: SyncBatchKey = { action: params.action, lookupField: params.lookupField, ...(params.partitionName === undefined ? {} : { partitionName: params.partitionName }) };
      const results: MarketoSyncResult[] = [];
      // one chunk after the other, as Marketo would apply a single list: a later record wins
      for (const part of chunk(params.input, MAX_BATCH)) {
        const { result, offset } = await syncBatches.ride(JSON.stringify(key), part, undefined, params.fence);
        results.push(...result.slice(offset, offset + part.length));
      }
      return results;
    },
  };
}
