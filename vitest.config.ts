import { defineConfig } from 'vitest/config';
import { WaitingFilesFirst } from './test/support/sequencer.ts';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // integration files each boot their own database; two cores -> keep parallelism modest
    pool: 'forks',
    maxWorkers: 2,
    // A worker keeps its modules from one file to the next: the source keeps no state in its modules
    // (each service, registry and database is made per test), and re-importing Prisma's client,
    // PGlite and the app for each of 50 files cost ~3 s a file, a third of the suite's wall time.
    isolate: false,
    // Timeouts catch hangs, not slowness: on a shared machine whose cores are all busy, booting an
    // embedded database and migrating it has taken over a minute. No test asserts on speed.
    testTimeout: 90_000,
    hookTimeout: 180_000,
    sequence: { sequencer: WaitingFilesFirst },
  },
});
