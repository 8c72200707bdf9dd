import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // integration files each boot their own database; two cores -> keep parallelism modest
    pool: 'forks',
    maxWorkers: 2,
    // Timeouts catch hangs, not slowness: on a shared machine whose cores are all busy, booting an
    // embedded database and migrating it has taken over a minute. No test asserts on speed.
    testTimeout: 90_000,
    hookTimeout: 180_000,
  },
});
