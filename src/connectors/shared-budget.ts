// A vendor's rate limit shared by every replica of the service (Marketo's calls per 20 s are per
// instance, Dataverse's requests per 5 minutes per application user). The composition root gives
// each client one when replicas share a PostgreSQL database (src/db/shared-budget.ts); the embedded
// database is one process, and its clients keep their in-process limiters alone.

export interface SharedBudget {
  /**
   * Reserves one call at `at` (epoch ms) in the window every replica counts against. Answers 0
   * when granted, else how many ms to wait before asking again.
   */
  reserve(at: number): Promise<number>;
}

/** Waits until the shared budget grants one call. A budget that cannot answer does not stop calls: the vendor's own limit and our retries still apply. */
export async function reserveShared(
  budget: SharedBudget | undefined,
  now: () => number,
  sleep: (ms: number) => Promise<void>,
  onError: (error: unknown) => void,
): Promise<void> {
  if (!budget) return;
  for (;;) {
    let wait: number;
    try {
      wait = await budget.reserve(now());
    } catch (error) {
      onError(error);
      return;
    }
    if (wait <= 0) return;
    await sleep(wait);
  }
}
