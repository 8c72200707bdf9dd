import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { openDatabase, type Database } from './db/database.ts';
import { migrate } from './db/migrate.ts';
import { createApp } from './http/app.ts';
import { createHealth } from './http/health.ts';
import { createLogger, type Logger } from './logger.ts';
import { projectPaths } from './paths.ts';

// The composition root: config -> logger -> database (+ migrations) -> HTTP. Everything else
// receives what it needs from here; nothing reaches for globals.

export interface RunningService {
  url: string;
  db: Database;
  logger: Logger;
  /** stop intake, finish in-flight work, close the database; idempotent */
  stop(reason?: string): Promise<void>;
}

export async function startService(config: Config, options: { logger?: Logger } = {}): Promise<RunningService> {
  const logger = options.logger ?? createLogger({ level: config.log.level });
  const paths = projectPaths();
  const closers: { name: string; close: () => Promise<void> }[] = [];
  const closeAll = async () => {
    for (const closer of closers.reverse()) {
      try {
        await closer.close();
      } catch (error) {
        logger.error({ err: error, component: closer.name }, 'error while closing');
      }
    }
  };

  try {
    const db = await openDatabase({ url: config.database.url, dataDir: config.database.dataDir, poolSize: config.database.poolSize });
    closers.push({ name: 'database', close: () => db.close() });
    logger.info(
      { engine: db.engine, ...(db.engine === 'pglite' ? { dataDir: config.database.dataDir } : {}) },
      db.engine === 'pglite' ? 'using the embedded database (PGlite)' : 'using PostgreSQL',
    );
    const { applied } = await migrate(db, paths);
    logger.info({ applied }, applied.length ? `applied ${applied.length} migration(s)` : 'database schema is current');

    if (config.sandbox) {
      logger.warn('SANDBOX MODE: no Marketo/Dynamics credentials are set; the built-in simulators stand in for both');
    }

    let draining = false;
    const health = createHealth({ db, migrationsDir: paths.migrationsDir, sandbox: config.sandbox, probes: [], draining: () => draining });
    const app = createApp({ logger, health, bodyLimitBytes: config.server.bodyLimitBytes, draining: () => draining });

    const server: Server = app.listen(config.server.port, config.server.host);
    await once(server, 'listening');
    const address = server.address() as AddressInfo;
    const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
    const url = `http://${host}:${address.port}`;
    logger.info({ url }, 'listening');

    let stopping: Promise<void> | undefined;
    const stop = (reason = 'stop requested') => {
      stopping ??= (async () => {
        logger.info({ reason }, 'shutting down: intake stopped, finishing in-flight work');
        draining = true;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const timeout = new Promise<'timeout'>((resolve) => setTimeout(resolve, config.server.shutdownTimeoutMs, 'timeout').unref());
        if ((await Promise.race([closed, timeout])) === 'timeout') {
          logger.warn({ timeoutMs: config.server.shutdownTimeoutMs }, 'in-flight requests did not finish in time; closing them');
          server.closeAllConnections();
        }
        await closeAll();
        logger.info('stopped');
      })();
      return stopping;
    };
    return { url, db, logger, stop };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
  const logger = createLogger({ level: config.log.level });
  const service = await startService(config, { logger });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      void service.stop(signal).then(
        () => process.exit(0),
        (error: unknown) => {
          logger.fatal({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
