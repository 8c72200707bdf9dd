import { describe, expect, it } from 'vitest';
import { DataverseAuthError, DataverseCodes, DataverseTransientError, dataverseErrorFromResponse } from '../../src/connectors/dynamics/dataverse.errors.ts';
import { dataverseRetryVerdict } from '../../src/connectors/dynamics/dataverse.retry.ts';

const settings = { transientRetries: 2, rateLimitRetries: 2, retryBaseDelayMs: 100 };
const answered = (status: number, code = '', retryAfterMs?: number) =>
  dataverseErrorFromResponse(status, code, 'message', { endpoint: 'POST $batch', ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });

describe('dataverseRetryVerdict', () => {
  it('renews the token once after a 401 from the Web API, never after a refusal of the token endpoint', () => {
    expect(dataverseRetryVerdict(answered(401), {}, settings)).toEqual({ retry: true, as: 'auth', waitMs: 0, renewToken: true });
    expect(dataverseRetryVerdict(answered(401), { auth: 1 }, settings)).toEqual({ retry: false });
    const refused = new DataverseAuthError('Token request refused', { httpStatus: 401, endpoint: 'POST token' });
    expect(dataverseRetryVerdict(refused, {}, settings)).toEqual({ retry: false });
  });

  it('pauses for exactly the Retry-After of a 429, and still pauses when its retries are spent', () => {
    expect(dataverseRetryVerdict(answered(429, DataverseCodes.requestsLimit, 7000), {}, settings)).toEqual({ retry: true, as: 'rateLimit', waitMs: 0, throttleMs: 7000 });
    expect(dataverseRetryVerdict(answered(429, DataverseCodes.requestsLimit, 7000), { rateLimit: 2 }, settings)).toEqual({ retry: false, throttleMs: 7000 });
  });

  it('without a Retry-After doubles the pause per 429 up to 64 s, and shrinks the $batch after an execution-time 429', () => {
    expect(dataverseRetryVerdict(answered(429, DataverseCodes.executionTimeLimit), { rateLimit: 1 }, settings)).toMatchObject({ throttleMs: 2000, shrinkBatch: true });
    expect(dataverseRetryVerdict(answered(429), { rateLimit: 9 }, { ...settings, rateLimitRetries: 10 })).toMatchObject({ retry: true, throttleMs: 64_000 });
  });

  it('resends after a 5xx, a timeout or a lost $batch, doubling the wait, until its transient retries are spent', () => {
    expect(dataverseRetryVerdict(answered(503), {}, settings)).toEqual({ retry: true, as: 'transient', waitMs: 100 });
    expect(dataverseRetryVerdict(new DataverseTransientError('Timed out'), { transient: 1 }, settings)).toEqual({ retry: true, as: 'transient', waitMs: 200 });
    expect(dataverseRetryVerdict(answered(503), { transient: 2 }, settings)).toEqual({ retry: false });
  });

  it('gives up at once on a conflict, a validation refusal or an error that is not Dataverse’s', () => {
    expect(dataverseRetryVerdict(answered(412, DataverseCodes.concurrencyVersionMismatch), {}, settings)).toEqual({ retry: false });
    expect(dataverseRetryVerdict(answered(400, DataverseCodes.pluginError), {}, settings)).toEqual({ retry: false });
    expect(dataverseRetryVerdict(new Error('bug'), {}, settings)).toEqual({ retry: false });
  });
});
