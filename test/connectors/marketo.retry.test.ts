import { describe, expect, it } from 'vitest';
import { MarketoApiError } from '../../src/connectors/marketo/marketo.errors.ts';
import { defaultMarketoRetry, marketoRetryVerdict } from '../../src/connectors/marketo/marketo.retry.ts';

const settings = { ...defaultMarketoRetry, transientRetries: 2, rateLimitRetries: 3 };
const coded = (code: string) => MarketoApiError.fromCode(code, 'message', 'leads.sync', 200);
const read = { idempotent: true };
const write = { idempotent: false };

describe('marketoRetryVerdict', () => {
  it('renews the token once after 601/602, and not after an identity refusal', () => {
    expect(marketoRetryVerdict(coded('601'), {}, settings, read)).toMatchObject({ retry: true, as: 'auth', waitMs: 0, renewToken: true });
    expect(marketoRetryVerdict(coded('602'), { auth: 1 }, settings, read)).toEqual({ retry: false });
    const identity = new MarketoApiError('auth', { message: 'refused', endpoint: 'identity' });
    expect(marketoRetryVerdict(identity, {}, settings, read)).toEqual({ retry: false });
  });

  it('backs off after 606 and 615, pausing every caller only for 606, until its rate-limit retries are spent', () => {
    expect(marketoRetryVerdict(coded('606'), {}, settings, write)).toMatchObject({ retry: true, as: 'rateLimit', pauseEveryone: true });
    expect(marketoRetryVerdict(coded('615'), { rateLimit: 2 }, settings, write)).toMatchObject({ retry: true, as: 'rateLimit', pauseEveryone: false });
    expect(marketoRetryVerdict(coded('606'), { rateLimit: 3 }, settings, read)).toEqual({ retry: false });
  });

  it('retries a transient failure of a read, never of a write that may have landed', () => {
    for (const code of ['604', '611', '713']) {
      expect(marketoRetryVerdict(coded(code), { transient: 1 }, settings, read)).toMatchObject({ retry: true, as: 'transient' });
      expect(marketoRetryVerdict(coded(code), {}, settings, write)).toEqual({ retry: false });
    }
    expect(marketoRetryVerdict(coded('604'), { transient: 2 }, settings, read)).toEqual({ retry: false });
  });

  it('waits at least the Retry-After the server asked for', () => {
    const busy = new MarketoApiError('transient', { message: 'HTTP 503', endpoint: 'leads.query', httpStatus: 503, retryAfterMs: 60_000 });
    expect(marketoRetryVerdict(busy, {}, settings, read)).toMatchObject({ retry: true, waitMs: 60_000 });
  });

  it('gives up at once on the daily quota, a permanent refusal, or an error that is not Marketo’s', () => {
    expect(marketoRetryVerdict(coded('607'), {}, settings, read)).toEqual({ retry: false });
    expect(marketoRetryVerdict(coded('1003'), {}, settings, read)).toEqual({ retry: false });
    expect(marketoRetryVerdict(new Error('bug'), {}, settings, read)).toEqual({ retry: false });
  });
});
