// npm run sweep [-- --full]: one reconciliation sweep now, against the configured database and
// systems (the environment, as `npm start` reads it), through the same lease as the scheduled
// sweeps: refused while any replica sweeps. This process also drains the inbox while it waits
// for the run's outcomes, like any replica. Exit 0 succeeded, 1 failed, 2 stopped early, 3 busy.
import { loadConfigOrExit } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { startService } from '../src/main.ts';

const NEVER = '0 0 0 1 1 *';
// no schedule in this process: it runs the one sweep asked for; the HTTP port is any free one
const config = loadConfigOrExit({ ...process.env, PORT: '0', HOST: '127.0.0.1', SYNC_SWEEP_CRON: NEVER, SYNC_FULL_CRON: NEVER });
const logger = createLogger({ level: config.log.level });
const service = await startService(config, { logger });
let code = 1;
try {
  const answer = await service.sweeper.requestSweep({ trigger: 'CLI', full: process.argv.includes('--full') });
  if (answer.status === 'busy') {
    console.log(answer.message);
    code = 3;
  } else {
    const { result } = answer;
    console.log(JSON.stringify({ runId: result.runId, status: result.status, counts: result.counts, notes: result.notes, error: result.error }, null, 2));
    code = result.status === 'SUCCEEDED' ? 0 : result.status === 'STOPPED' ? 2 : 1;
  }
} finally {
  await service.stop('sweep finished');
}
process.exit(code);
