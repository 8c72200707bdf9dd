import type { DataverseStore } from './dataverse.store.ts';
import { SimHttpError } from './dataverse.types.ts';

// Duplicate detection on create (reference dataverse §15). The Web API suppresses it by default;
// a request with `MSCRM.SuppressDuplicateDetection: false` asks for the org's published duplicate
// rules, and a create that matches an existing row (active rows only, as the default rules
// exclude inactive ones) is refused with 0x80040333. Microsoft's example answers HTTP 500, its
// status-code table 412: the status is a setting, 500 by default as in the example.

export type DuplicateRule = {
  /** the table the rule guards (baseentityname = matchingentityname here) */
  table: string;
  /** the column compared, case-insensitively, as the default rules do */
  column: string;
  name: string;
};

export const DUPLICATE_MESSAGE = 'A record was not created or updated because a duplicate of the current record already exists.';

/** Dataverse ships default rules for account, contact and lead; these are the ones by email and name. */
export const defaultDuplicateRules = (): DuplicateRule[] => [
  { table: 'lead', column: 'emailaddress1', name: 'Leads with the same e-mail address' },
  { table: 'contact', column: 'emailaddress1', name: 'Contacts with the same e-mail address' },
  { table: 'account', column: 'name', name: 'Accounts with the same Account Name' },
];

export function createDuplicateDetection() {
  let rules = defaultDuplicateRules();
  let status = 500;
  const key = (value: unknown) => (typeof value === 'string' ? value.trim().toLowerCase() : value === null || value === undefined ? null : JSON.stringify(value));

  return {
    /** throws Dataverse's refusal when the request asked for detection and a rule matches an active row */
    check(store: DataverseStore, table: string, body: Record<string, unknown>, header: string | undefined): void {
      if (header?.trim().toLowerCase() !== 'false') return;
      for (const rule of rules.filter((r) => r.table === table)) {
        const wanted = key(body[rule.column]);
        if (wanted === null || wanted === '') continue;
        const match = [...store.rows(table).values()].some((row) => (row.values.statecode ?? 0) === 0 && key(row.values[rule.column]) === wanted);
        if (match) throw new SimHttpError(status, '0x80040333', DUPLICATE_MESSAGE);
      }
    },
    rules: () => [...rules],
    setRules(next: readonly DuplicateRule[]): void {
      rules = [...next];
    },
    /** the HTTP status of a refusal (500 as Microsoft's example, or 412 as its status table) */
    setStatus(next: 500 | 412): void {
      status = next;
    },
    reset(): void {
      rules = defaultDuplicateRules();
      status = 500;
    },
  };
}

export type DuplicateDetection = ReturnType<typeof createDuplicateDetection>;
