// Service protection (reference §4.2) and the faults a test injects in front of it.
import type { Request, Response } from 'express';
import { SimHttpError } from './dataverse.types.ts';
import type { DataverseSimulatorState } from './dataverse.state.ts';
import { isBatch, sendError } from './dataverse.wire.ts';

/**
 * Service protection per user (reference §4.2): concurrency is refused at once; the request count
 * and the execution time are measured over a sliding window. Admitted requests carry the
 * x-ms-ratelimit-* headers of what is left. Returns the 429 to send, or nothing when admitted.
 */
export function admit(state: DataverseSimulatorState, userId: string, res: Response): SimHttpError | undefined {
  const { limits, timing } = state.config;
  const nowMs = state.now();
  const log = state.requestLog.get(userId) ?? [];
  while (log.length > 0 && log[0]! <= nowMs - limits.windowMs) log.shift();
  const executions = state.executionLog.get(userId) ?? [];
  while (executions.length > 0 && executions[0]!.at <= nowMs - limits.windowMs) executions.shift();
  const executed = executions.reduce((sum, e) => sum + e.ms, 0);
  const active = state.inFlight.get(userId) ?? 0;
  if (active >= limits.maxConcurrent) {
    return new SimHttpError(429, '0x80072326', `Number of concurrent requests exceeded the limit of ${limits.maxConcurrent}.`, { 'Retry-After': '1' });
  }
  if (log.length >= limits.requestsPerWindow) {
    const retry = Math.max(1, Math.ceil((log[0]! + limits.windowMs - nowMs) / 1000));
    return new SimHttpError(
      429,
      '0x80072322',
      `Number of requests exceeded the limit of ${limits.requestsPerWindow} over time window of ${limits.windowMs / 1000} seconds.`,
      { 'Retry-After': String(retry) },
    );
  }
  if (executed >= limits.executionMsPerWindow) {
    // until enough of the window's oldest execution time has slid out
    let freed = 0;
    let until = nowMs;
    for (const e of executions) {
      freed += e.ms;
      until = e.at + limits.windowMs;
      if (executed - freed < limits.executionMsPerWindow) break;
    }
    return new SimHttpError(
      429,
      '0x80072321',
      `Combined execution time of incoming requests exceeded limit of ${limits.executionMsPerWindow.toLocaleString('en-US')} milliseconds over time window of ${limits.windowMs / 1000} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.`,
      { 'Retry-After': String(Math.max(1, Math.ceil((until - nowMs) / 1000))) },
    );
  }
  log.push(nowMs);
  state.requestLog.set(userId, log);
  executions.push({ at: nowMs, ms: timing.latencyMs });
  state.executionLog.set(userId, executions);
  state.inFlight.set(userId, active + 1);
  res.setHeader('x-ms-ratelimit-burst-remaining-xrm-requests', String(limits.requestsPerWindow - log.length));
  res.setHeader('x-ms-ratelimit-time-remaining-xrm-requests', (limits.executionMsPerWindow - executed - timing.latencyMs).toFixed(2));
  return undefined;
}

/**
 * Arms a pending lost-answer fault on this request: when its answer is about to go out and the
 * request wrote something (the store's mutation count moved) with a success status, the answer is
 * replaced by a dropped connection or a gateway error. The write itself stays applied.
 */
export function loseAnswerIfWritten(state: DataverseSimulatorState, req: Request, res: Response): void {
  if (req.method === 'GET') return;
  const batch = isBatch(req);
  const fault = state.lostAnswers.find((f) => f.batch === batch);
  if (!fault) return;
  const mutationsBefore = state.store.mutations;
  const end = res.end.bind(res) as (...args: unknown[]) => Response;
  res.end = ((...args: unknown[]) => {
    const wrote = state.store.mutations !== mutationsBefore && res.statusCode < 400;
    if (!wrote || fault.count <= 0) return end(...args);
    fault.count -= 1;
    if (fault.count <= 0) state.lostAnswers.splice(state.lostAnswers.indexOf(fault), 1);
    for (const listener of state.faultListeners) listener(fault);
    if (fault.answer === 'network') {
      req.socket.destroy();
      return res;
    }
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.statusCode = fault.answer;
    res.setHeader('Content-Type', 'text/html');
    return end(`<html><body><h1>${fault.answer} ${fault.answer === 502 ? 'Bad Gateway' : 'Gateway Timeout'}</h1></body></html>`);
  }) as typeof res.end;
}

/**
 * Takes the next injected fault, if any, as an overloaded front end would answer before the limits
 * apply. Returns true when the fault answered (or will call `run` after its delay); false when there
 * is none and the request goes on.
 */
export function answerInjectedFault(state: DataverseSimulatorState, req: Request, res: Response, run: () => void): boolean {
  const fault = state.faults[0];
  if (!fault) return false;
  fault.count -= 1;
  if (fault.count <= 0) state.faults.shift();
  for (const listener of state.faultListeners) listener(fault);
  switch (fault.kind) {
    case 'rate_limit':
      sendError(res, new SimHttpError(429, fault.code ?? '0x80072322', 'Number of requests exceeded the limit of 6000 over time window of 300 seconds.', { 'Retry-After': String(fault.retryAfterSeconds) }));
      return true;
    case 'server_error': {
      const status = fault.status ?? 503;
      sendError(res, new SimHttpError(status, '0x80040216', status === 503 ? 'Service Unavailable' : 'An unexpected error occurred.'));
      return true;
    }
    case 'network':
      req.socket.destroy();
      return true;
    case 'latency':
      setTimeout(run, fault.ms);
      return true;
  }
  // a lost answer waits for a write (loseAnswerIfWritten) and never sits in this queue
  return false;
}
