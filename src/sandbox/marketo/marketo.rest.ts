// The REST gate every /rest call passes, in Marketo's order: URI length, the `_method=GET` form,
// the route, the access token, concurrency, the rate window and the daily quota, an injected fault,
// the JSON body, then the resource's handler. Every answer is counted under its endpoint.
import type { Request, Response } from 'express';
import { count, nextRequestId, rollDay, type MarketoSim } from './marketo.state.ts';
import { SimulatorError, type Envelope, type MarketoEndpoint, type MarketoFault, type Route } from './marketo.types.ts';

const MAX_URI_BYTES = 8 * 1024;
// Adobe: calls answered with these codes do not count toward quota or rate limit
const uncountedCodes = new Set(['601', '602', '604', '605', '608', '611']);

export const defaultMessages: Record<string, string> = {
  '601': 'Access token invalid',
  '602': 'Access token expired',
  '603': 'Access denied',
  '604': 'Request time-out',
  '606': "Max rate limit '100' exceeded with in '20' secs",
  '607': 'Daily quota reached',
  '608': 'API Temporarily Unavailable',
  '609': 'Invalid JSON',
  '610': 'Requested resource not found',
  '611': 'System error',
  '612': 'Invalid Content Type',
  '613': 'Invalid Multipart Request',
  '614': 'Invalid Subscription',
  '615': "Concurrent access limit '10' reached",
  '713': 'Transient Error',
};

/** A call refused with a Marketo error code (HTTP 200, `success: false`). */
type Refusal = { code: string; message: string };

function sendEnvelope(sim: MarketoSim, res: Response, requestId: string, envelope: Envelope): void {
  const body: Record<string, unknown> = { requestId, success: true };
  const empty = !envelope.result || envelope.result.length === 0;
  if (envelope.result && !(empty && sim.omitEmptyResult)) body['result'] = envelope.result;
  else if (envelope.result) body['warnings'] = ['No assets found for the given search criteria.'];
  if (envelope.moreResult !== undefined) body['moreResult'] = envelope.moreResult;
  if (envelope.nextPageToken !== undefined) body['nextPageToken'] = envelope.nextPageToken;
  res.status(200).json(body);
}

function sendError(res: Response, requestId: string, code: string, message: string): void {
  res.status(200).json({ requestId, success: false, errors: [{ code, message }] });
}

function pickFault(sim: MarketoSim, endpoint: MarketoEndpoint): MarketoFault | undefined {
  for (const fault of sim.faults) {
    if (fault.endpoint !== undefined && fault.endpoint !== endpoint) continue;
    if (fault.type === 'after-apply' && endpoint !== 'leads.sync') continue;
    if (fault.rate !== undefined && sim.random() >= fault.rate) continue;
    if (fault.times !== undefined) {
      fault.times--;
      if (fault.times <= 0) sim.faults = sim.faults.filter((f) => f !== fault);
    }
    return fault;
  }
  return undefined;
}

function admitRate(sim: MarketoSim): string | undefined {
  const { limits } = sim;
  const at = sim.now();
  while (sim.windowHead < sim.windowTimes.length && (sim.windowTimes[sim.windowHead] ?? 0) <= at - limits.windowMs) sim.windowHead++;
  if (sim.windowHead > 1024 && sim.windowHead * 2 > sim.windowTimes.length) {
    sim.windowTimes = sim.windowTimes.slice(sim.windowHead);
    sim.windowHead = 0;
  }
  if (sim.windowTimes.length - sim.windowHead >= limits.callsPerWindow) {
    return `Max rate limit '${limits.callsPerWindow}' exceeded with in '${Math.round(limits.windowMs / 1000)}' secs`;
  }
  return undefined;
}

function countCall(sim: MarketoSim): void {
  sim.windowTimes.push(sim.now());
  sim.dailyUsed++;
  sim.counters.counted++;
}

type RestRequest = { url: URL; method: string; params: URLSearchParams; rawBody: Buffer };

/** The call as the routes read it: a POST with `_method=GET` is a GET whose query continues in the form body. */
function readRequest(req: Request): RestRequest | Refusal {
  const url = new URL(req.originalUrl, 'http://simulator.invalid');
  const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  if (req.method !== 'POST' || url.searchParams.get('_method') !== 'GET') return { url, method: req.method, params: url.searchParams, rawBody };
  if (!req.is('application/x-www-form-urlencoded')) return { code: '612', message: 'Invalid Content Type' };
  const params = new URLSearchParams(url.searchParams);
  params.delete('_method');
  for (const [key, value] of new URLSearchParams(rawBody.toString('utf8'))) params.append(key, value);
  return { url, method: 'GET', params, rawBody: Buffer.alloc(0) };
}

/** Token, concurrency, rate window and daily quota, in Marketo's order; undefined when admitted. */
function admission(sim: MarketoSim, req: Request): Refusal | undefined {
  const bearer = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '')?.[1];
  const token = bearer === undefined ? undefined : sim.tokens.get(bearer);
  if (!token) return { code: '601', message: 'Access token invalid' };
  if (token.expiresAt <= sim.now()) return { code: '602', message: 'Access token expired' };
  if (sim.counters.inFlight >= sim.limits.maxConcurrent) return { code: '615', message: `Concurrent access limit '${sim.limits.maxConcurrent}' reached` };
  const rateMessage = admitRate(sim);
  if (rateMessage) return { code: '606', message: rateMessage };
  rollDay(sim);
  if (sim.dailyUsed >= sim.limits.dailyQuota) return { code: '607', message: 'Daily quota reached' };
  return undefined;
}

/** Holds a concurrency slot until the answer is sent or the connection closes. */
function holdSlot(sim: MarketoSim, res: Response): void {
  sim.counters.inFlight++;
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      sim.counters.inFlight--;
    }
  };
  res.on('close', release);
  res.on('finish', release);
}

/** Answers an injected fault that replaces the call (hang, HTTP status, error code); false when the call runs. */
function answerFault(sim: MarketoSim, res: Response, requestId: string, endpoint: MarketoEndpoint, fault: MarketoFault | undefined): boolean {
  if (fault?.type === 'hang') {
    count(sim, endpoint, 'hang');
    return true;
  }
  if (fault?.type === 'http') {
    count(sim, endpoint, String(fault.status));
    res.status(fault.status).type('text/html').send(`<html><body><h1>${fault.status}</h1></body></html>`);
    return true;
  }
  if (fault?.type === 'code') {
    count(sim, endpoint, fault.code);
    sendError(res, requestId, fault.code, fault.message ?? defaultMessages[fault.code] ?? 'Injected error');
    return true;
  }
  return false;
}

/** The JSON body of a POST the route reads one from; a refusal for a wrong content type or bad JSON. */
function readBody(req: Request, call: RestRequest, route: Route): { body: unknown } | Refusal {
  if (req.method === 'POST' && call.rawBody.length > 0 && route.jsonBody) {
    if (!req.is('application/json')) return { code: '612', message: 'Invalid Content Type' };
    try {
      return { body: JSON.parse(call.rawBody.toString('utf8')) };
    } catch {
      return { code: '609', message: 'Invalid JSON' };
    }
  }
  if (req.method === 'POST' && call.method === 'POST' && !req.is('application/json') && req.get('content-type') !== undefined && call.rawBody.length > 0) {
    return { code: '612', message: 'Invalid Content Type' };
  }
  return { body: undefined };
}

type Handler = NonNullable<Route['methods']['GET']>;

/** Runs the handler between the in-process call listeners; an after-apply fault then loses the answer. */
function runHandler(sim: MarketoSim, req: Request, res: Response, requestId: string, endpoint: MarketoEndpoint, call: RestRequest, run: { handler: Handler; match: RegExpExecArray; body: unknown; fault: MarketoFault | undefined }): void {
  const { params } = call;
  const { body, fault } = run;
  try {
    const remotePort = req.socket.remotePort;
    for (const listener of sim.callListeners) listener({ endpoint, phase: 'before', params, body, remotePort });
    const envelope = run.handler({ params, body, requestId, rawBodyLength: call.rawBody.length }, run.match);
    for (const listener of sim.callListeners) listener({ endpoint, phase: 'after', params, body, remotePort, result: envelope.result });
    if (fault?.type === 'after-apply') {
      for (const listener of sim.faultListeners) listener(fault, endpoint);
      count(sim, endpoint, fault.answer);
      if (fault.answer === '604') sendError(res, requestId, '604', defaultMessages['604'] ?? 'Request time-out');
      return;
    }
    count(sim, endpoint, undefined);
    sendEnvelope(sim, res, requestId, envelope);
  } catch (error) {
    if (!(error instanceof SimulatorError)) throw error;
    count(sim, endpoint, error.code);
    sendError(res, requestId, error.code, error.message);
  }
}

export async function handleRest(sim: MarketoSim, routes: readonly Route[], req: Request, res: Response): Promise<void> {
  const requestId = nextRequestId(sim);
  sim.counters.total++;
  const refuse = (endpoint: MarketoEndpoint | 'unknown', refusal: Refusal) => {
    count(sim, endpoint, refusal.code);
    sendError(res, requestId, refusal.code, refusal.message);
  };
  if (Buffer.byteLength(req.originalUrl) > MAX_URI_BYTES) {
    count(sim, 'unknown', '414');
    res.status(414).type('text/html').send('<html><body><h1>414 Request-URI Too Large</h1></body></html>');
    return;
  }
  const call = readRequest(req);
  if ('code' in call) return refuse('unknown', call);

  let match: RegExpExecArray | null = null;
  const route = routes.find((r) => (match = r.pattern.exec(call.url.pathname)) !== null);
  if (!route || !match) return refuse('unknown', { code: '610', message: 'Requested resource not found' });
  const handler = call.method === 'GET' || call.method === 'POST' ? route.methods[call.method] : undefined;
  const endpoint = call.method === 'POST' ? (route.postEndpoint ?? route.endpoint) : route.endpoint;
  if (!handler) return refuse(endpoint, { code: '605', message: 'HTTP Method not supported' });
  const refused = admission(sim, req);
  if (refused) return refuse(endpoint, refused);

  holdSlot(sim, res);
  const fault = pickFault(sim, endpoint);
  if (!fault || fault.type === 'after-apply' || (fault.type === 'code' && !uncountedCodes.has(fault.code))) countCall(sim);
  if (sim.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, sim.latencyMs));
  if (fault && fault.type !== 'after-apply') for (const listener of sim.faultListeners) listener(fault, endpoint);
  if (answerFault(sim, res, requestId, endpoint, fault)) return;
  const read = readBody(req, call, route);
  if ('code' in read) return refuse(endpoint, read);
  runHandler(sim, req, res, requestId, endpoint, call, { handler, match, body: read.body, fault });
}
