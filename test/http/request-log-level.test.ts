import { describe, expect, it } from 'vitest';
import { requestLogLevel } from '../../src/http/app.ts';

describe('the level each request is logged at', () => {
  it.each([
    ['an accepted Dataverse webhook is debug: it is already an inbox event', '/webhooks/dynamics?code=x', 202, false, 'debug'],
    ['an accepted Marketo webhook is debug', '/webhooks/marketo/person-changed', 202, false, 'debug'],
    ['a refused webhook stays loud', '/webhooks/dynamics', 401, false, 'warn'],
    ['a webhook the service failed is an error', '/webhooks/marketo/sync-person', 503, false, 'error'],
    ['a GraphQL query keeps its info line', '/graphql', 200, false, 'info'],
    ['the console keeps its info line', '/console/', 200, false, 'info'],
    ['an error thrown on a 2xx path is an error', '/webhooks/dynamics', 202, true, 'error'],
  ] as const)('%s', (_name, url, status, failed, level) => {
    expect(requestLogLevel(url, status, failed)).toBe(level);
  });
});
