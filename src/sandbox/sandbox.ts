import { startDataverseSimulator, type DataverseSimulator } from './dynamics/index.ts';
import { startMarketoSimulator, type StartedMarketoSimulator } from './marketo/index.ts';

// Sandbox mode: both vendors' APIs simulated in-process, so the service runs end to end with no
// credentials (a trial, a demo, the tests). The simulators are as strict as the real APIs.

export interface Sandbox {
  marketo: StartedMarketoSimulator;
  dataverse: DataverseSimulator;
  close(): Promise<void>;
}

export interface SandboxOptions {
  marketoLatencyMs?: number;
  /**
   * Marketo's rate window (20 s). Tests and benchmarks shorten it, and the client's with it, so
   * that many short scenarios do not wait on a limit meant for a day's steady traffic.
   */
  marketoRateWindowMs?: number;
}

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const [marketo, dataverse] = await Promise.all([
    startMarketoSimulator({
      ...(options.marketoLatencyMs !== undefined ? { latencyMs: options.marketoLatencyMs } : {}),
      ...(options.marketoRateWindowMs !== undefined ? { limits: { windowMs: options.marketoRateWindowMs } } : {}),
    }),
    startDataverseSimulator(),
  ]);
  return {
    marketo,
    dataverse,
    async close() {
      await Promise.all([marketo.close(), dataverse.close()]);
    },
  };
}
