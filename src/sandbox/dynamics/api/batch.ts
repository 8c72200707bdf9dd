// POST $batch (reference §2.7): each operation runs through the same routes as a single request.
import type { Request, Response } from 'express';
import { SimHttpError, type SimRecord, type WriteContext } from '../dataverse.types.ts';
import { ODataQueryError } from '../odata-query.ts';
import { parseBatch, serializeBatchResponse, type BatchRequest, type BatchResponse, type BatchResponsePart } from '../dataverse.batch.ts';
import { tellChange, type DataverseSimulatorState } from '../dataverse.state.ts';
import { API_PREFIX, GUID, preferences } from '../dataverse.wire.ts';
import { handleApi } from './router.ts';

/** A request of a batch as the handlers expect it: headers, URL and JSON body of the part. */
function innerRequest(method: string, pathAndQuery: string, headers: Map<string, string>, body: unknown): Request {
  const fake = {
    method,
    originalUrl: pathAndQuery,
    body,
    protocol: 'http',
    get: (name: string) => headers.get(name.toLowerCase()),
    is: (type: string) => (/^application\/json/i.test(headers.get('content-type') ?? '') ? type : false),
  };
  return fake as unknown as Request;
}

/** Collects what a handler answers, for one part of the batch response. */
function innerResponse() {
  const out = { status: 200, headers: {} as Record<string, string>, body: undefined as string | undefined };
  const res = {
    locals: {},
    setHeader(name: string, value: string) {
      out.headers[name] = value;
      return res;
    },
    status(code: number) {
      out.status = code;
      return res;
    },
    json(value: unknown) {
      out.headers['Content-Type'] = 'application/json; odata.metadata=minimal';
      out.headers['OData-Version'] = '4.0';
      out.body = JSON.stringify(value);
      return res;
    },
    end() {
      return res;
    },
  };
  return { out, res: res as unknown as Response };
}

function errorResponse(error: unknown): BatchResponse {
  const e =
    error instanceof SimHttpError
      ? error
      : error instanceof ODataQueryError
        ? new SimHttpError(400, error.code, error.message)
        : new SimHttpError(500, '0x80040216', error instanceof Error ? error.message : String(error));
  return {
    status: e.status,
    headers: { 'Content-Type': 'application/json; odata.metadata=minimal', 'OData-Version': '4.0', ...e.headers },
    body: JSON.stringify({ error: { code: e.code, message: e.message } }),
  };
}

const MAX_BATCH_URL = 65_536;

/** Runs one operation of a batch; `$n` in its URL or an @odata.bind value names an earlier Content-ID. */
function runOperation(state: DataverseSimulatorState, op: BatchRequest, ctx: WriteContext, ids: Map<string, string>): BatchResponse {
  const resolveRef = (value: string) => value.replace(/^\$(\w+)/, (whole, id: string) => {
    const target = ids.get(id);
    if (target === undefined) throw new SimHttpError(400, '0x80060888', `Content-ID Reference: '${whole}' does not exist in the batch context.`);
    return target;
  });
  try {
    if (op.url.length > MAX_BATCH_URL) throw new SimHttpError(414, '0x8006088e', `The request URL is longer than ${MAX_BATCH_URL} characters.`);
    let url = resolveRef(op.url);
    if (/^https?:\/\//i.test(url)) url = url.replace(/^https?:\/\/[^/]+/i, '');
    if (!url.startsWith('/')) url = `/api/data/v9.2/${url}`;
    if (!API_PREFIX.test(url)) throw new SimHttpError(404, '0x8006088a', `Resource not found for the segment '${url}'.`);
    let body: unknown;
    if (op.body !== '') {
      try {
        body = JSON.parse(op.body) as unknown;
      } catch (cause) {
        throw new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: the body is not valid JSON (${cause instanceof Error ? cause.message : ''}).`);
      }
      if (typeof body === 'object' && body !== null) {
        for (const [k, v] of Object.entries(body)) {
          if (k.endsWith('@odata.bind') && typeof v === 'string' && v.startsWith('$')) (body as Record<string, unknown>)[k] = resolveRef(v);
        }
      }
    }
    const { out, res } = innerResponse();
    handleApi(state, innerRequest(op.method, url, op.headers, body), res, ctx);
    const location = out.headers['OData-EntityId'] ?? (out.body && out.status === 201 ? createdUrl(state, url, out.body) : undefined);
    if (op.contentId !== undefined && location !== undefined) ids.set(op.contentId, location);
    return { ...out, contentId: op.contentId };
  } catch (error) {
    return { ...errorResponse(error), contentId: op.contentId };
  }
}

function createdUrl(state: DataverseSimulatorState, url: string, body: string): string | undefined {
  const set = /^\/api\/data\/v9\.[0-2]\/([a-z_]+)/.exec(url)?.[1];
  const t = set === undefined ? undefined : state.store.tableBySet(set);
  const id = t ? (JSON.parse(body) as Record<string, unknown>)[t.primaryKey] : undefined;
  return t && typeof id === 'string' ? `${state.baseUrl}/api/data/v9.2/${t.entitySet}(${id})` : undefined;
}

/** A change set commits together: on the first failure the rows it touched go back as they were. */
function runChangeSet(state: DataverseSimulatorState, ops: BatchRequest[], ctx: WriteContext): BatchResponsePart {
  const store = state.store;
  const touched = new Map<string, { table: string; id: string; before: SimRecord | undefined; values?: Record<string, unknown>; version?: number }>();
  const remember = (op: BatchRequest) => {
    const m = new RegExp(`/([a-z_]+)\\((${GUID})\\)`).exec(op.url);
    const t = m?.[1] ? store.tableBySet(m[1]) : undefined;
    if (!t || !m?.[2]) return;
    const id = m[2].toLowerCase();
    const key = `${t.logicalName}:${id}`;
    if (touched.has(key)) return;
    const rec = store.get(t.logicalName, id);
    touched.set(key, { table: t.logicalName, id, before: rec, ...(rec ? { values: { ...rec.values }, version: rec.versionnumber } : {}) });
  };
  const ids = new Map<string, string>();
  const responses: BatchResponse[] = [];
  const rowsBefore = new Map([...store.records].map(([table, rows]) => [table, new Set(rows.keys())]));
  state.deferredChanges = [];
  try {
    for (const op of ops) {
      remember(op);
      const response = runOperation(state, op, ctx, ids);
      if (response.status >= 400) {
        // roll back: rows created go, rows changed or deleted come back as they were
        for (const [table, rows] of store.records) {
          const before = rowsBefore.get(table)!;
          for (const id of [...rows.keys()]) if (!before.has(id)) rows.delete(id);
        }
        for (const t of touched.values()) {
          if (!t.before) continue;
          t.before.values = t.values!;
          t.before.versionnumber = t.version!;
          store.rows(t.table).set(t.id, t.before);
        }
        store.mutations += 1;
        state.deferredChanges = undefined;
        return { kind: 'response', response };
      }
      responses.push(response);
    }
    const changes = state.deferredChanges;
    state.deferredChanges = undefined;
    for (const change of changes) tellChange(state, change);
    return { kind: 'changeset', responses };
  } finally {
    state.deferredChanges = undefined;
  }
}

/**
 * POST $batch (reference §2.7): parts run in order; without `odata.continue-on-error` the first
 * failure stops the batch and the answer is a 400 holding that failure alone. The batch counted as
 * one request at admission; each operation's execution time is charged to the window here.
 */
export async function runBatch(state: DataverseSimulatorState, req: Request, res: Response, ctx: WriteContext): Promise<void> {
  if (req.method !== 'POST') throw new SimHttpError(405, '0x80060888', 'The HTTP verb is not supported for $batch: use POST.');
  const parts = parseBatch(typeof req.body === 'string' ? req.body : '', req.get('content-type'));
  const operations = parts.reduce((n, p) => n + (p.kind === 'changeset' ? p.requests.length : 1), 0);
  const executionMs = operations * state.config.timing.operationMs;
  if (executionMs > 0) {
    const log = state.executionLog.get(ctx.userId) ?? [];
    log.push({ at: state.now(), ms: executionMs });
    state.executionLog.set(ctx.userId, log);
  }
  const delay = state.config.timing.latencyMs + executionMs;
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
  const continueOnError = preferences(req).continueOnError;
  const answered: BatchResponsePart[] = [];
  const ids = new Map<string, string>();
  for (const part of parts) {
    const result: BatchResponsePart =
      part.kind === 'changeset' ? runChangeSet(state, part.requests, ctx) : { kind: 'response', response: runOperation(state, part.request, ctx, ids) };
    const failed = result.kind === 'response' && result.response.status >= 400;
    if (failed && !continueOnError) {
      const { contentType, body } = serializeBatchResponse([result]);
      res.status(400).setHeader('Content-Type', contentType);
      res.send(body);
      return;
    }
    answered.push(result);
  }
  const { contentType, body } = serializeBatchResponse(answered);
  if (continueOnError) res.setHeader('Preference-Applied', 'odata.continue-on-error');
  res.status(200).setHeader('Content-Type', contentType);
  res.send(body);
}
