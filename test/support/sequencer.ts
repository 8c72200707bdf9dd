import { BaseSequencer, type TestSpecification } from 'vitest/node';

// Files that spend most of their time waiting (leases running out, 429 storms, child processes)
// start first. On a clean clone vitest has no timings and runs larger files first, so these small
// files ran last, on one worker, with the other idle: the chaos campaign alone was ~40% of the
// PostgreSQL run's wall time.
const WAITING_FILES = [
  // assembles the Docker image (npm ci, tsc) and runs it as child processes: PostgreSQL runs only
  'test/deploy/dockerfile.integration.test.ts',
  'test/proof/chaos.integration.test.ts',
  'test/proof/pause.integration.test.ts',
  'test/sweep/replicas.integration.test.ts',
  'test/sync/paused-worker.integration.test.ts',
  'test/sync/protocol.integration.test.ts',
  'test/sweep/sweep.integration.test.ts',
];

export class WaitingFilesFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (file: TestSpecification) => {
      const index = WAITING_FILES.findIndex((name) => file.moduleId.endsWith(name));
      return index === -1 ? WAITING_FILES.length : index;
    };
    // Array.prototype.sort is stable: every other file keeps vitest's own order
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}
