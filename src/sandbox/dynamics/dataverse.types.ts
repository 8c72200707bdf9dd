// The shapes the Dataverse simulator's store, resources and admin share.
import type { SimTable } from './dataverse.metadata.ts';

/** An answer the real Web API would give instead of success. */
export class SimHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export type SimLookup = { id: string; logicalName: string };

export type SimRecord = {
  id: string;
  table: string;
  /** internal values: DateTime as epoch ms (whole seconds), lookups as SimLookup */
  values: Record<string, unknown>;
  versionnumber: number;
};

export type SimMessage = 'Create' | 'Update' | 'Delete' | 'Merge';

export type SimChange = {
  message: SimMessage;
  table: SimTable;
  id: string;
  /** values written (Create: every set column), before defaults for Update */
  changed: Record<string, unknown>;
  /** row after the operation; undefined for Delete */
  record: SimRecord | undefined;
  userId: string;
  at: number;
  /** the TCP port of the Web API request that made it (which client process); absent for admin writes */
  remotePort?: number | undefined;
  /** the pipeline depth (RemoteExecutionContext.Depth): 1 for a direct call, more inside a plug-in chain */
  depth?: number | undefined;
  /** Merge: the MergeRequest's other parameters (the change's id is the Target, the surviving row) */
  merge?: { subordinateId: string; updateContent: Record<string, unknown>; performParentingChecks: boolean } | undefined;
};

export type ColumnGrant = { read: boolean; create: boolean; update: boolean };

export type BusinessRule = {
  id: string;
  table: 'lead' | 'contact' | 'account';
  column: string;
  /** a refusal; a plug-in that rewrites a value instead is a ValueRewrite */
  kind: 'required' | 'email' | 'pattern';
  /** regular expression source for kind "pattern" */
  pattern?: string;
  /** Dynamics' message returned to the caller, as a plug-in's InvalidPluginExecutionException would */
  message: string;
  messages?: ('Create' | 'Update')[];
};

/**
 * A synchronous pre-operation plug-in that normalises a value before it is stored, whoever writes
 * it (e.g. "usa" -> "United States"). Its change is part of the write: the caller's own webhook
 * step sees the rewritten value, attributed to the caller.
 */
export type ValueRewrite = {
  id: string;
  table: 'lead' | 'contact' | 'account';
  column: string;
  /** matched case-insensitively against the whole trimmed value */
  from: string;
  to: string;
};

/** One time a ValueRewrite changed a write. */
export type AppliedRewrite = { rewriteId: string; table: string; id: string; column: string; from: string; to: string; userId: string; at: number };

export type WriteContext = {
  userId: string;
  /** UI/admin users hold every field-security grant; the app user only what the admin configured */
  fullAccess: boolean;
  /** the TCP port of the Web API request, passed on to the change it makes */
  remotePort?: number | undefined;
  /** a write made by a plug-in that another operation triggered runs one level deeper (default 1) */
  depth?: number | undefined;
};
