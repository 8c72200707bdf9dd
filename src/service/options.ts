import type { Logger } from '../logger.ts';
import type { SandboxOptions } from '../sandbox/sandbox.ts';

export interface ServiceOptions {
  logger?: Logger;
  /** simulator settings in sandbox mode (tests, benchmarks) */
  sandbox?: SandboxOptions;
  /** sandbox mode only: seed both simulators with demo data (npm start, npm run demo) */
  seed?: boolean;
  /**
   * Wraps the vendor clients' HTTP (tests): races and faults at the HTTP boundary, such as an
   * automation editing a person right after the sync created it, or a plug-in rewriting a value.
   */
  interceptVendorHttp?: { marketo?: (next: typeof fetch) => typeof fetch; dynamics?: (next: typeof fetch) => typeof fetch };
  /** the clock of Marketo webhooks' coalescing window (tests: a repeat must not straddle its edge); default Date.now */
  webhookClock?: () => number;
  /** an in-memory embedded database starts from this dump (tests: an already migrated one) */
  embeddedStartFrom?: Blob;
  /** Batch Sync Person's list page (tests: several pages of a short list); default Marketo's 300 */
  batchSyncPageSize?: number;
}
