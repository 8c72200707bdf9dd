import { describe, expect, it } from 'vitest';
import { dataverseErrorFromResponse } from '../../src/connectors/dynamics/dataverse.errors.ts';

// A duplicate rule's refusal (0x80040333) is a refusal like a business rule's whatever the status
// (Microsoft's example answers 500, its status table 412; reference dataverse §15): never retried.
describe('a duplicate rule’s refusal', () => {
  it('is a validation error with Dynamics’ message at 500 and at 412', () => {
    for (const status of [500, 412]) {
      const error = dataverseErrorFromResponse(status, '0x80040333', 'A record was not created or updated because a duplicate of the current record already exists.', { endpoint: 'POST leads' });
      expect(error).toMatchObject({ kind: 'validation', code: '0x80040333' });
      expect(error.message).toContain('duplicate of the current record');
    }
  });

  it('leaves a duplicate key (the sync’s own retried create) a conflict to read back', () => {
    expect(dataverseErrorFromResponse(412, '0x80040237', 'Cannot insert duplicate key.', { endpoint: 'POST leads' }).kind).toBe('conflict');
  });
});
