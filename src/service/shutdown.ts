import type { Server } from 'node:http';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { Closers } from './closers.ts';

/**
 * The service's stop, in the reverse order of its start: intake first (new requests refused,
 * in-flight ones finish), then what was opened, last to first. Vendor calls still running
 * half-way through the shutdown budget are aborted, so their work goes back to the inbox.
 * Idempotent: a second call returns the first one's promise.
 */
export function createStop(
  config: Config,
  deps: { server: Server; shutdown: AbortController; closers: Closers; logger: Logger; beginDraining: () => void },
): (reason?: string) => Promise<void> {
  const { server, shutdown, logger } = deps;
  const budgetMs = config.server.shutdownTimeoutMs;
  let stopping: Promise<void> | undefined;
  return (reason = 'stop requested') => {
    stopping ??= (async () => {
      logger.info({ reason }, 'shutting down: intake stopped, finishing in-flight work');
      deps.beginDraining();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const abortVendorCalls = setTimeout(() => shutdown.abort(new Error('the service is shutting down')), budgetMs / 2);
      abortVendorCalls.unref();
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(resolve, budgetMs, 'timeout').unref());
      if ((await Promise.race([closed, timeout])) === 'timeout') {
        logger.warn({ timeoutMs: budgetMs }, 'in-flight requests did not finish in time; closing them');
        server.closeAllConnections();
      }
      await deps.closers.closeAll();
      clearTimeout(abortVendorCalls);
      logger.info('stopped');
    })();
    return stopping;
  };
}
