import type { DataverseClient } from '../connectors/dynamics/dataverse.client.ts';
import type { MarketoClient } from '../connectors/marketo/marketo.client.ts';
import type { Database } from '../db/database.ts';
import type { Logger } from '../logger.ts';
import type { Suppressions } from '../security/suppression.ts';
import type { MappingService } from '../sync/mappings.ts';

// What a sweep is asked, what it is given, and what it answers (sweep.ts runs it).

export type SweepTrigger = 'SCHEDULE' | 'OPERATOR' | 'CLI' | 'FULL' | 'TEST';
export type SweepStatus = 'SUCCEEDED' | 'STOPPED' | 'FAILED';

export type SweepMarketoClient = Pick<MarketoClient, 'getPagingToken' | 'iterateLeadChanges' | 'iterateDeletedLeads' | 'iterateActivities' | 'getDailyUsage' | 'stats'>;
export type SweepDataverseClient = Pick<DataverseClient, 'trackChanges' | 'queryModifiedSince' | 'apiUrl'>;

export interface SweeperOptions {
  db: Database;
  marketo: SweepMarketoClient;
  dataverse: SweepDataverseClient;
  mappings: MappingService;
  /** the Dataverse application user the sync writes as: rows it modified last are echoes */
  syncUserId: () => Promise<string>;
  logger: Logger;
  owner: string;
  /** Marketo's daily quota and the share of it a sweep may bring the day's usage up to */
  quota: { dailyQuota: number; share: number };
  /** the Marketo API-only user ("Modifying User" of our own writes), when known */
  /** the Marketo API user (its changes are our echoes); known once the client has a token */
  marketoApiUser?: (() => string | undefined) | undefined;
  /** wakes the inbox worker after a batch was enqueued */
  notify: () => void;
  /** links per full-reconciliation page and events per enqueue batch; default 1000 */
  pageSize?: number;
  /** the modifiedon fallback re-reads this far before its watermark (commit lag, clock skew); default 5 min */
  overlapMs?: number;
  /** how long a run waits for the engine to process its events, to count their outcomes; default 0 */
  outcomeWaitMs?: number;
  /** consecutive empty Marketo feed pages before the sweep resumes next time; default 200 */
  maxEmptyPages?: number;
  /** a Marketo paging token older than this is treated as lost (Delete Lead activities live 14 days); default 13 days */
  marketoCursorMaxAgeMs?: number;
  /** a journaled create still open after this long has lost its worker (longer than a record lease); default 2 min */
  unfinishedCreateAgeMs?: number;
  /** the erasure list: changes of erased persons are not enqueued (security/suppression.ts) */
  suppressions?: Suppressions;
}

export interface SweepCounts {
  dynamicsChanges: number;
  dynamicsDeletes: number;
  marketoChanges: number;
  marketoDeletes: number;
  /** Marketo merges (Merge Leads activities) with a linked person among their losers or winner */
  marketoMerges?: number;
  /** changes written by the sync itself, dropped before the inbox */
  echoesDropped: number;
  /** a person's Marketo edits that a sync write planned before them overwrote (overwritten.ts), handed to the inbox */
  overwrittenEdits: number;
  /** journaled creates never linked whose worker is gone, handed to the inbox to finish */
  unfinishedCreates?: number;
  /** accounts and systemusers changed: each fans out to the linked persons that show it */
  relatedChanges?: number;
  /** changes the link already holds (same Dataverse version, or values equal to the snapshot) */
  alreadySynced: number;
  /** Marketo changes of persons that are not linked (only Sync Person to Microsoft creates them in Dynamics) */
  unlinkedSkipped: number;
  eventsEnqueued: number;
  /** events whose dedupe key was already in the inbox (a webhook or an earlier sweep saw them) */
  duplicates: number;
  linksReconciled: number;
  marketoCalls: number;
  dynamicsCalls: number;
  /** outcomes of this run's events, when the run waited for them (outcomeWaitMs) */
  created?: number;
  updated?: number;
  collisions?: number;
  rejections?: number;
  failures?: number;
  pendingAfterWait?: number;
}

export interface SweepResult {
  runId: string;
  status: SweepStatus;
  counts: SweepCounts;
  notes: string[];
  error: string | null;
}

export interface SweepRequest {
  trigger: SweepTrigger;
  /** the cron tick a scheduled run serves */
  scheduledFor?: Date;
  /** reconcile every linked pair too */
  full?: boolean;
  signal?: AbortSignal;
  /** overrides SweeperOptions.outcomeWaitMs for this run (0: do not wait) */
  outcomeWaitMs?: number;
  /** told the run's id as soon as its row exists (an API answers with it before the sweep ends) */
  onStart?: (runId: string) => void;
}
