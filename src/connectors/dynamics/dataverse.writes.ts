import { randomUUID } from 'node:crypto';
import type { WriteFence } from '../../sync/ports.ts';
import { admittedEachTry, createRideAlong, NothingToSend } from '../ride-along.ts';
import { decodeBatch, encodeBatch, type BatchOperation, type BatchOperationAnswer, type createBatchSizer } from './dataverse.batch.ts';
import { DataverseApiError, DataverseCodes, DataverseTransientError, dataverseErrorFromResponse } from './dataverse.errors.ts';
import { dataverseEntitySets, encodeGuid, keyUrl, selectList, toRecord, withRelated, type DataverseEntity, type DataverseExpansion, type DataverseRecord, type DataverseValue } from './dataverse.rows.ts';
import { errorBodySchema, rowSchema } from './dataverse.schemas.ts';
import { parse, type DataverseCall, type RawResponse } from './dataverse.transport.ts';

// The Web API writes. Creates and updates of all work in flight ride in one $batch (ride-along.ts),
// filled when the budget admits it; each operation keeps its own answer (see dataverse.batch.ts for
// why no change sets). A batch lost to a timeout or 5xx is sent again as it was (dataverse.retry.ts):
// an update that had run then answers 412 (its If-Match is stale: the caller re-reads), a create
// answers duplicate key (its id is ours: read back below). A 429 for a batch means nothing ran.

export type DataverseOwner = { systemUserId: string } | { domainName: string };

type BatchSizer = ReturnType<typeof createBatchSizer>;

// A batch's operations run one after another (at 20 ms each, 40 writes in one request take 0.9 s).
// At a steady rate the writes go as several small batches in parallel, whose requests the budget
// easily affords (at the most, 150 writes a second in batches of 15 spend 10 of its 18 requests a
// second); a burst, or a backlog, fills each batch as far as its size allows.
const STEADY_WRITES_PER_S = 150;
const SPLIT_BATCH = 15;

/** The writes of the last second or so, decaying: how many operations the next $batch may carry. */
function createWriteRate(now: () => number, batchSizer: BatchSizer) {
  let writeRate = { perSecond: 0, at: now() };
  return {
    wrote(operations: number): void {
      const at = now();
      writeRate = { perSecond: writeRate.perSecond * Math.exp(-(at - writeRate.at) / 1000) + operations, at };
    },
    capacity(waiting: number): number {
      const steady = writeRate.perSecond * Math.exp(-(now() - writeRate.at) / 1000) < STEADY_WRITES_PER_S;
      // a backlog of a second's worth at that rate fills batches too, however slowly it formed
      return steady && waiting < STEADY_WRITES_PER_S ? Math.min(SPLIT_BATCH, batchSizer.size()) : batchSizer.size();
    },
  };
}

/** One $batch of the operations admitted (their fences checked) before each try. */
async function sendBatch(
  call: DataverseCall,
  apiUrl: string,
  counted: { batches: number; batchOperations: number },
  bind: () => BatchOperation[],
  admit: () => Promise<BatchOperation[]>,
  answered: (operations: number, raw: RawResponse) => void,
): Promise<{ operations: BatchOperation[]; raw: RawResponse } | undefined> {
  let operations: BatchOperation[] = [];
  const admitted = admittedEachTry(bind, admit);
  try {
    const raw = await call({
      endpoint: 'POST $batch',
      // built again before each resend: an operation whose work lost its lease meanwhile leaves it
      everyAttempt: true,
      build: async () => {
        operations = await admitted();
        if (operations.length === 0) return null;
        const { contentType, body } = encodeBatch(new URL(apiUrl).pathname, operations);
        counted.batches += 1;
        counted.batchOperations += operations.length;
        return { method: 'POST', url: '$batch', endpoint: 'POST $batch', body, headers: { 'Content-Type': contentType, Prefer: 'odata.continue-on-error' } };
      },
      // measured before the budget lets the next batch be built, which is sized by this answer
      answered: (raw) => answered(operations.length, raw),
    });
    return { operations, raw };
  } catch (error) {
    if (error instanceof NothingToSend) return undefined;
    throw error;
  }
}

/** Every operation's answer, in order; a missing one is a failure to retry. */
function answersOf(operations: BatchOperation[], raw: RawResponse): BatchOperationAnswer[] {
  if (raw.text === undefined || raw.status !== 200) {
    // continue-on-error ignored: the answer holds one failure and says nothing of the others
    throw new DataverseTransientError(`$batch answered HTTP ${raw.status} without an answer per operation`, { endpoint: 'POST $batch', httpStatus: raw.status });
  }
  const answers = decodeBatch(raw.text, raw.headers.get('content-type'));
  return operations.map((_, i) => answers[i] ?? { status: 503, headers: {}, json: { error: { code: '', message: `no answer for operation ${i + 1} of the $batch` } } });
}

export function createDataverseWrites(
  call: DataverseCall,
  options: {
    apiUrl: string;
    now: () => number;
    batchSizer: BatchSizer;
    getRecord: (entity: DataverseEntity, id: string, columns: readonly string[]) => Promise<DataverseRecord | null>;
    resolveSystemUserId: (owner: DataverseOwner) => Promise<string>;
    /** false: creates ask for the org's duplicate rules (`MSCRM.SuppressDuplicateDetection: false`) */
    suppressDuplicateDetection: boolean;
  },
) {
  const { batchSizer } = options;
  const counted = { batches: 0, batchOperations: 0 };
  const rate = createWriteRate(options.now, batchSizer);
  async function sendWrites(bind: () => BatchOperation[], admit: () => Promise<BatchOperation[]>): Promise<BatchOperationAnswer[]> {
    const sent = await sendBatch(call, options.apiUrl, counted, bind, admit, (operations, raw) => {
      if (raw.status === 200 && raw.text !== undefined) batchSizer.observe(operations, raw.elapsedMs ?? 0);
    });
    if (!sent) return [];
    return answersOf(sent.operations, sent.raw);
  }
  // Until one batch has answered, its size is a cautious guess: the batches of a first burst go one
  // at a time, so the second carries everything that queued meanwhile at the size the first measured,
  // instead of a dozen guesses of ten going out together.
  let sizeMeasured: Promise<void> | undefined;
  const writes = createRideAlong<BatchOperation, BatchOperationAnswer[]>({
    maxItems: 1000,
    capacity: (_key, waiting) => rate.capacity(waiting),
    send(_key, bind, admit) {
      if (sizeMeasured) return sizeMeasured.then(() => sendWrites(bind, admit));
      const first = sendWrites(bind, admit);
      sizeMeasured = first.then(
        () => undefined,
        () => undefined,
      );
      return first;
    },
  });

  /** An operation's answer as the row it returned, or its own typed error. */
  function rowOf(entity: DataverseEntity, answer: BatchOperationAnswer, endpoint: string): DataverseRecord {
    if (answer.status < 400) return toRecord(entity, parse(rowSchema, { status: answer.status, headers: new Headers(), json: answer.json }, endpoint), endpoint);
    const body = errorBodySchema.safeParse(answer.json);
    const [code, message] = body.success ? [body.data.error.code ?? '', body.data.error.message ?? ''] : ['', ''];
    throw dataverseErrorFromResponse(answer.status, code, message, { endpoint });
  }

  /** One write in the next $batch: its row as stored, or its own typed error. */
  async function write(entity: DataverseEntity, operation: BatchOperation, endpoint: string, fence?: WriteFence): Promise<DataverseRecord> {
    rate.wrote(1);
    const { result, offset } = await writes.ride('writes', [operation], undefined, fence);
    return rowOf(entity, result[offset]!, endpoint);
  }

  /**
   * A create and, right behind it in the same $batch, the read of the row it made with its related
   * rows (`$expand`, which a write's own representation ignores): top-level parts run in order, so
   * the read sees the create, and the owner and account cost no request of their own. The create's
   * outcome is the write's; a read that failed leaves the row as the create returned it.
   */
  async function createThenRead(entity: DataverseEntity, create: BatchOperation, read: BatchOperation, expand: readonly DataverseExpansion[], endpoint: string, fence?: WriteFence): Promise<DataverseRecord> {
    rate.wrote(2);
    const { result, offset } = await writes.ride('writes', [create, read], undefined, fence);
    const created = rowOf(entity, result[offset]!, endpoint);
    const readBack = result[offset + 1];
    if (!readBack || readBack.status >= 400) return created;
    try {
      return withRelated(rowOf(entity, readBack, `GET ${dataverseEntitySets[entity].set}(id)`), expand, endpoint);
    } catch {
      return created;
    }
  }

  return {
    counted: (): { batches: number; batchOperations: number } => ({ ...counted }),

    async createRecord(
      entity: DataverseEntity,
      values: Record<string, DataverseValue>,
      createOptions: { owner?: DataverseOwner; columns?: readonly string[]; expand?: readonly DataverseExpansion[]; fence?: WriteFence | undefined } = {},
    ): Promise<DataverseRecord> {
      const { set, key } = dataverseEntitySets[entity];
      // A client-chosen id makes a retried create detectable: a second POST of the same id is refused as a duplicate.
      const supplied = values[key];
      const id = typeof supplied === 'string' ? supplied : randomUUID();
      const body: Record<string, unknown> = { ...values, [key]: id };
      if (createOptions.owner) body['ownerid@odata.bind'] = `/systemusers(${await options.resolveSystemUserId(createOptions.owner)})`;
      const endpoint = `POST ${set}`;
      const select = selectList(entity, createOptions.columns ?? Object.keys(values).filter((c) => !c.includes('@')));
      try {
        const headers: Record<string, string> = { Prefer: 'return=representation', ...(options.suppressDuplicateDetection ? {} : { 'MSCRM.SuppressDuplicateDetection': 'false' }) };
        const create: BatchOperation = { method: 'POST', url: `${set}?$select=${select}`, body, headers };
        const expand = createOptions.expand ?? [];
        if (expand.length === 0) return await write(entity, create, endpoint, createOptions.fence);
        const expansion = expand.map((e) => `${e.navigation}($select=${selectList(e.table, e.columns)})`).join(',');
        const read: BatchOperation = { method: 'GET', url: `${keyUrl(entity, id)}?$select=${select}&$expand=${expansion}`, headers: {} };
        return await createThenRead(entity, create, read, expand, endpoint, createOptions.fence);
      } catch (error) {
        // the first attempt may have committed before a 5xx/timeout reached us
        if (error instanceof DataverseApiError && error.code === DataverseCodes.duplicateKey) {
          const existing = await options.getRecord(entity, id, createOptions.columns ?? Object.keys(values));
          if (existing) return existing;
        }
        throw error;
      }
    },

    updateRecord(
      entity: DataverseEntity,
      id: string,
      values: Record<string, DataverseValue>,
      updateOptions: { etag?: string; columns?: readonly string[]; fence?: WriteFence | undefined } = {},
    ): Promise<DataverseRecord> {
      const { set, key } = dataverseEntitySets[entity];
      const select = selectList(entity, updateOptions.columns ?? Object.keys(values).filter((c) => !c.includes('@')));
      const body = { ...values };
      delete body[key];
      // return=representation: the row as stored, after any synchronous plug-in rewrote a value;
      // If-Match: * keeps an update from turning into an upsert when the row is gone
      const headers = { Prefer: 'return=representation', 'If-Match': updateOptions.etag ?? '*' };
      return write(entity, { method: 'PATCH', url: `${keyUrl(entity, id)}?$select=${select}`, body, headers }, `PATCH ${set}(id)`, updateOptions.fence);
    },

    async deleteRecord(entity: DataverseEntity, id: string, deleteOptions: { etag?: string } = {}): Promise<void> {
      const set = dataverseEntitySets[entity].set;
      await call({ method: 'DELETE', url: keyUrl(entity, id), endpoint: `DELETE ${set}(id)`, ...(deleteOptions.etag ? { headers: { 'If-Match': deleteOptions.etag } } : {}) });
    },

    async assignOwner(entity: DataverseEntity, id: string, owner: DataverseOwner): Promise<void> {
      const userId = await options.resolveSystemUserId(owner);
      await call({
        method: 'PATCH',
        url: keyUrl(entity, id),
        endpoint: `PATCH ${dataverseEntitySets[entity].set}(id)`,
        body: { 'ownerid@odata.bind': `/systemusers(${encodeGuid(userId)})` },
        headers: { 'If-Match': '*' },
      });
    },
  };
}
