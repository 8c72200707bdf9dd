import { describe, expect, it } from 'vitest';
import { DataverseApiError } from '../../src/connectors/dynamics/dataverse.errors.ts';
import { outcomeForError } from '../../src/sync/engine.ts';

describe('the inbox outcome of a failed sync', () => {
  const throttled = new DataverseApiError('rate_limited', 'Number of requests exceeded the limit', { httpStatus: 429, retryAfterMs: 5_000 });

  it('retries a transient vendor failure after the vendor\'s Retry-After', () => {
    expect(outcomeForError(throttled)).toMatchObject({ status: 'retry', retryAfterMs: 5_000 });
  });

  it('hands the work back without counting an attempt while the service stops, whatever the failure', () => {
    const stopping = new AbortController();
    stopping.abort();
    expect(outcomeForError(throttled, stopping.signal)).toEqual({ status: 'busy' });
    expect(outcomeForError(new Error('The operation was aborted'), stopping.signal)).toEqual({ status: 'busy' });
    expect(outcomeForError(throttled, new AbortController().signal)).toMatchObject({ status: 'retry' });
  });
});
