import Bottleneck from 'bottleneck';
import type { Logger } from 'pino';
import { reserveShared, type SharedBudget } from '../shared-budget.ts';

// One client-side budget for Dataverse's service protection limits (reference §4.2: per user, a
// 5-minute sliding window of 6,000 requests and 1,200,000 ms of execution time, 52 concurrent).
// Requests are spent evenly: a leaky bucket (Bottleneck's reservoir, the same mechanism as the
// Marketo client) drips our share across the window, so a bulk load queues here instead of
// turning into 429s. Execution time is measured per request (the wall time of each answer, an
// upper bound of what the server charges) and admitted against its own sliding window. The
// x-ms-ratelimit-* headers correct both when someone else (another process of the same
// application user) spends the same budget. After a 429 everything pauses for Retry-After, then
// restarts slowly: one request in flight, doubling with each success, never the whole queue at once.

export type DataverseBudget = {
  /** requests this client spends per window; default 5,400 (90% of the platform's 6,000) */
  requestsPerWindow?: number;
  /** the sliding window; default 300,000 ms */
  windowMs?: number;
  /** requests in flight; default 16 (the platform refuses above 52) */
  maxConcurrent?: number;
  /** execution time this client spends per window; default 1,080,000 ms (90% of 1,200,000) */
  executionMsPerWindow?: number;
};

export type DataversePacerOptions = {
  budget?: DataverseBudget;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  logger?: Logger;
  /** the application user's requests counted across replicas (PostgreSQL); `requestsPerWindow` is then all replicas' share */
  sharedBudget?: SharedBudget;
};

export type DataversePacerStats = {
  /** requests refused with 429 */
  throttled: number;
  /** pauses started by a 429 (one per throttling episode) */
  episodes: number;
};

const REQUEST_LIMIT_HEADER = 'x-ms-ratelimit-burst-remaining-xrm-requests';
const TIME_LIMIT_HEADER = 'x-ms-ratelimit-time-remaining-xrm-requests';

export function createDataversePacer(options: DataversePacerOptions = {}) {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const logger = options.logger;
  const windowMs = options.budget?.windowMs ?? 300_000;
  const share = options.budget?.requestsPerWindow ?? 5400;
  const maxConcurrent = options.budget?.maxConcurrent ?? 16;
  const executionBudget = options.budget?.executionMsPerWindow ?? 1_080_000;

  // Any window holds at most the bucket plus what drips in: together they stay within our share.
  const bucket = Math.max(1, Math.floor(share / 50));
  const dripMs = Math.max(1, Math.ceil(windowMs / Math.max(1, share - bucket)));
  const limiter = new Bottleneck({
    maxConcurrent,
    reservoir: bucket,
    reservoirIncreaseAmount: 1,
    reservoirIncreaseInterval: dripMs,
    reservoirIncreaseMaximum: bucket,
    // see the Marketo client: Bottleneck's default 250 ms heartbeat would slow a faster drip
    heartbeatInterval: Math.max(5, Math.floor(dripMs / 40)),
  });

  const executions: { at: number; ms: number }[] = [];
  let executedMs = 0;
  let pausedUntil = 0;
  let concurrency = maxConcurrent;
  let episode: { started: number; refused: number; code: string | undefined } | undefined;
  const stats = { throttled: 0, episodes: 0 };

  function slide(): void {
    const floor = now() - windowMs;
    while (executions.length > 0 && executions[0]!.at <= floor) executedMs -= executions.shift()!.ms;
  }

  /** Waits out a throttling pause and keeps the execution time inside its window. */
  async function ready(): Promise<void> {
    for (;;) {
      const at = now();
      if (at < pausedUntil) {
        await sleep(pausedUntil - at);
        continue;
      }
      slide();
      if (executedMs < executionBudget || executions.length === 0) return;
      await sleep(Math.max(1, executions[0]!.at + windowMs - at));
    }
  }

  // The restart's cap on requests in flight is kept here, not in Bottleneck: its updateSettings()
  // stops the reservoir's drip for good (bottleneck 2.19.5), so the limiter's settings never change.
  let inFlight = 0;
  const blocked: (() => void)[] = [];
  function setConcurrency(value: number): void {
    concurrency = value;
    while (inFlight < concurrency && blocked.length > 0) {
      inFlight += 1;
      blocked.shift()!();
    }
  }
  async function enter(): Promise<void> {
    if (inFlight < concurrency) {
      inFlight += 1;
      return;
    }
    await new Promise<void>((resolve) => blocked.push(resolve));
  }
  function leave(): void {
    if (inFlight <= concurrency && blocked.length > 0) blocked.shift()!();
    else inFlight -= 1;
  }

  return {
    /** Runs `send` when the budget admits one request; `send` builds its request only then. */
    schedule<T>(send: () => Promise<T>): Promise<T> {
      return limiter.schedule(async () => {
        await enter();
        try {
          await ready();
          await reserveShared(options.sharedBudget, now, sleep, (error) => logger?.warn({ err: error }, 'shared Dataverse budget unavailable; pacing on the local budget alone'));
          return await send();
        } finally {
          leave();
        }
      });
    },

    /** After every answer: its measured time, and what the server says is left. */
    observe(headers: Headers, elapsedMs: number): void {
      executions.push({ at: now(), ms: elapsedMs });
      executedMs += elapsedMs;
      const requestsLeft = Number(headers.get(REQUEST_LIMIT_HEADER) ?? Number.NaN);
      // someone else spends this user's requests too: never hold more in the bucket than is left
      if (Number.isFinite(requestsLeft) && requestsLeft < bucket) {
        void limiter.currentReservoir().then((held) => {
          if (held !== null && held > requestsLeft) void limiter.incrementReservoir(Math.max(0, requestsLeft) - held);
        });
      }
      const timeLeft = Number(headers.get(TIME_LIMIT_HEADER) ?? Number.NaN);
      // the server's count of execution time is the truth when it says less is left than we think
      if (Number.isFinite(timeLeft) && executionBudget - executedMs > timeLeft) {
        const missing = executionBudget - executedMs - timeLeft;
        executions.push({ at: now(), ms: missing });
        executedMs += missing;
      }
    },

    /** A 429: pause every request for Retry-After, then restart with one request in flight. */
    throttled(retryAfterMs: number, code: string | undefined): void {
      stats.throttled += 1;
      pausedUntil = Math.max(pausedUntil, now() + retryAfterMs);
      setConcurrency(1);
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
      if (concurrency < maxConcurrent) setConcurrency(Math.min(maxConcurrent, concurrency * 2));
      if (episode && concurrency === maxConcurrent) {
        logger?.info({ code: episode.code, refused: episode.refused, durationMs: now() - episode.started }, 'Dataverse throttling over');
        episode = undefined;
      }
    },

    stats(): DataversePacerStats {
      return { ...stats };
    },

    async stop(): Promise<void> {
      await limiter.stop({ dropWaitingJobs: true });
    },
  };
}
