import type { Logger } from 'pino';
import { dataverseBudgetSpec, perCallPools, soloBudget, type Clock, type VendorBudget } from '../budget/vendors.ts';

// Dataverse's service protection limits (reference §4.2: per user, a 5-minute sliding window of
// 6,000 requests and 1,200,000 ms of execution time, 52 concurrent) spent through the deployment's
// budget (src/connectors/budget/): requests drip evenly from a token bucket, so a bulk load queues
// here instead of turning into 429s; execution time is measured per request (the wall time of each
// answer, an upper bound of what the server charges) and charged to its own bucket when the answer
// comes. The x-ms-ratelimit-* headers correct both when someone else (another integration of the
// same application user) spends the same budget. After a 429 everything pauses for Retry-After,
// then restarts slowly: one request in flight, doubling with each success, never the whole queue.

export type DataverseBudget = {
  /** requests the deployment spends per window; default 5,400 (90% of the platform's 6,000) */
  requestsPerWindow?: number;
  /** the sliding window; default 300,000 ms */
  windowMs?: number;
  /** requests in flight; default 16 (the platform refuses above 52) */
  maxConcurrent?: number;
  /** execution time the deployment spends per window; default 1,080,000 ms (90% of 1,200,000) */
  executionMsPerWindow?: number;
};

export type DataversePacerOptions = {
  budget?: DataverseBudget;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  logger?: Logger;
  /** this replica's slice of the deployment's budget (the service's coordinator); without it the client holds `budget` whole */
  shared?: VendorBudget;
  /** the budget's key when held alone */
  key?: string;
};

export type DataversePacerStats = {
  /** requests refused with 429 */
  throttled: number;
  /** pauses started by a 429 (one per throttling episode) */
  episodes: number;
};

const REQUEST_LIMIT_HEADER = 'x-ms-ratelimit-burst-remaining-xrm-requests';
const TIME_LIMIT_HEADER = 'x-ms-ratelimit-time-remaining-xrm-requests';

export function dataverseShare(budget: DataverseBudget = {}) {
  return {
    requestsPerWindow: budget.requestsPerWindow ?? 5400,
    windowMs: budget.windowMs ?? 300_000,
    maxConcurrent: budget.maxConcurrent ?? 16,
    executionMsPerWindow: budget.executionMsPerWindow ?? 1_080_000,
  };
}

export function createDataversePacer(options: DataversePacerOptions = {}) {
  const now = options.now ?? Date.now;
  const logger = options.logger;
  const share = dataverseShare(options.budget);
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  // held alone, the budget runs on the client's clock (tests move it by hand)
  const clock: Clock = {
    now,
    after: (ms, fn) => {
      let live = true;
      void sleep(ms).then(() => live && fn());
      return () => (live = false);
    },
  };
  const budget = options.shared ?? soloBudget(dataverseBudgetSpec(options.key ?? 'dataverse', share), perCallPools.dataverse, clock);
  const limiter = budget.limiter;
  const maxConcurrent = share.maxConcurrent;
  let concurrency = maxConcurrent;
  let episode: { started: number; refused: number; code: string | undefined } | undefined;
  const stats = { throttled: 0, episodes: 0 };

  return {
    /** Runs `send` when the budget admits one request; `send` builds its request only then. */
    schedule<T>(send: () => Promise<T>): Promise<T> {
      return limiter.schedule({ priority: 0 }, send);
    },

    /** After every answer: its measured time, and what the server says is left. */
    observe(headers: Headers, elapsedMs: number): void {
      limiter.charge('executionMs', elapsedMs);
      const requestsLeft = Number(headers.get(REQUEST_LIMIT_HEADER) ?? Number.NaN);
      // someone else spends this user's requests too: never hold more in the bucket than is left
      if (Number.isFinite(requestsLeft)) limiter.atMost('requests', requestsLeft);
      const timeLeft = Number(headers.get(TIME_LIMIT_HEADER) ?? Number.NaN);
      // the server's count of execution time is the truth when it says less is left than we hold
      if (Number.isFinite(timeLeft)) limiter.atMost('executionMs', timeLeft);
    },

    /** A 429: pause every request for Retry-After, then restart with one request in flight. */
    throttled(retryAfterMs: number, code: string | undefined): void {
      stats.throttled += 1;
      limiter.pauseUntil(limiter.now() + retryAfterMs);
      concurrency = 1;
      limiter.capConcurrency(1);
      if (episode) {
        episode.refused += 1;
        return;
      }
      stats.episodes += 1;
      episode = { started: now(), refused: 1, code };
      logger?.warn({ code, retryAfterMs }, 'Dataverse throttled: pausing every request for Retry-After, then restarting slowly');
    },

    /** A request answered (not 429): the restart doubles what may be in flight, up to the budget. */
    succeeded(): void {
      if (concurrency < maxConcurrent) {
        concurrency = Math.min(maxConcurrent, concurrency * 2);
        limiter.capConcurrency(concurrency >= maxConcurrent ? Number.POSITIVE_INFINITY : concurrency);
      }
      if (episode && concurrency === maxConcurrent) {
        logger?.info({ code: episode.code, refused: episode.refused, durationMs: now() - episode.started }, 'Dataverse throttling over');
        episode = undefined;
      }
    },

    stats(): DataversePacerStats {
      return { ...stats };
    },

    stop(): Promise<void> {
      limiter.stop();
      return Promise.resolve();
    },
  };
}
