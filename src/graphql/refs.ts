import type { Activity, ChangeEvent, FieldMapping, SyncLink, SyncRun } from '../db/generated/client.ts';
import type { InboxStats } from '../inbox/inbox.ts';
import type { ActivityField } from '../sync/activities.ts';
import type { Builder } from './builder.ts';
import { addConnection, addPageInfo } from './connection.ts';

// Every enum and object reference, declared before any is implemented, so domains can point at
// each other (a link lists its activities, an activity names its link).

/** A collision is one COLLISION_RESOLVED entry and the field it is about. */
export interface CollisionRow {
  activity: Activity;
  field: Partial<ActivityField>;
}

/** syncStatus resolves each part on demand; the inbox counts are read once per request. */
export interface SyncStatusRow {
  inbox: () => Promise<InboxStats>;
}

/** The link between a Marketo person and a Dynamics record. */
function linkEnums(builder: Builder) {
  const DynamicsEntity = builder.enumType('DynamicsEntity', {
    description: 'The Dynamics 365 table a Marketo person is linked to.',
    values: {
      LEAD: { description: 'a lead: Marketo wins collisions (marketing owns leads)' },
      CONTACT: { description: 'a contact: Dynamics wins collisions (the CRM is the system of record)' },
    } as const,
  });
  const LinkStatus = builder.enumType('LinkStatus', {
    description: 'Whether a link still syncs.',
    values: {
      ACTIVE: { description: 'syncing both ways' },
      FILTERED: { description: 'the Dynamics record fails the sync filter (SYNC_FILTER_LEAD / _CONTACT, default new_synctomkto ne false): updates stop, nothing is deleted' },
      DELETED_IN_DYNAMICS: { description: 'the Dynamics record was deleted; the Marketo person is kept' },
      DELETED_IN_MARKETO: { description: 'the Marketo person was deleted; it is re-created if the Dynamics record changes' },
    } as const,
  });
  return { DynamicsEntity, LinkStatus };
}

/** The activity log: what an entry records, where it stands, and how a collision was decided. */
function activityEnums(builder: Builder) {
  const ActivityState = builder.enumType('ActivityState', {
    description: 'Where an entry stands in the write protocol: recorded before the writes it describes, final once they are committed.',
    values: {
      PENDING: { description: 'the sync recorded what it is about to write and has not committed yet (or died before it did: the next sync settles it)' },
      FINAL: { description: 'what happened' },
      SUPERSEDED: { description: 'a plan that never happened (a 412, a refusal or a crash before the write); hidden from the lists' },
    } as const,
  });
  const ActivityType = builder.enumType('ActivityType', {
    description: 'What an activity log entry records.',
    values: {
      LINKED: { description: 'a person and a Dynamics record were linked (matched by id or email)' },
      CREATED_IN_DYNAMICS: { description: 'the sync created the Dynamics record (e.g. "Sync Person to Microsoft")' },
      CREATED_IN_MARKETO: { description: 'the sync created the Marketo person' },
      UPDATED_IN_DYNAMICS: { description: 'fields were written to Dynamics (old -> new in `fields`)' },
      UPDATED_IN_MARKETO: { description: 'fields were written to Marketo (old -> new in `fields`)' },
      COLLISION_RESOLVED: { description: 'a field changed on both sides; `fields` has both values, the base, the winner, the rule and the losing value' },
      VALIDATION_REJECTED: { description: 'Dynamics refused a write; its message is in `message`' },
      FIELD_SKIPPED: { description: 'a field was not synced (the sync user may not read or update it, or it is missing)' },
      SYNC_FILTERED: { description: 'the Dynamics record is filtered out by the sync filter, or passes it again; the message names the rule' },
      DELETED_IN_DYNAMICS: { description: 'the Dynamics record was deleted' },
      DELETED_IN_MARKETO: { description: 'the Marketo person was deleted' },
      LINK_MOVED: { description: 'the link moved, e.g. a lead qualified into a contact' },
      SYNC_FAILED: { description: 'an attempt failed; it is retried (reason in `message`)' },
      EVENT_DEAD: { description: 'a change event ran out of retries; an operator can replay it' },
      MERGE_CONFLICT: {
        description:
          'a merge in Marketo or Dynamics would have joined two linked pairs into one person or record: no link moved; one entry per link involved, the message names all of them (see mergeConflicts)',
      },
      STALE_WRITE_UNDONE: {
        description:
          'a write sent by a worker that had lost its record lease (a paused replica) landed over newer values; the sync put the agreed value back (`fields`: the stale value and the value restored)',
      },
    } as const,
  });
  const SyncSide = builder.enumType('SyncSide', {
    description: 'One of the two synced systems.',
    values: { MARKETO: { description: 'Marketo Engage' }, DYNAMICS: { description: 'Dynamics 365 (Dataverse)' } } as const,
  });
  const CollisionRule = builder.enumType('CollisionRule', {
    description: 'Why a collision was won by the side that won it.',
    values: {
      LEAD_MARKETO_WINS: { description: 'the person is linked to a lead: Marketo wins' },
      CONTACT_DYNAMICS_WINS: { description: 'the person is linked to a contact: Dynamics wins' },
      FIELD_OVERRIDE: { description: "an admin set this field's winner on its mapping" },
      ONE_WAY: { description: 'the field syncs in one direction only' },
    } as const,
  });
  return { ActivityState, ActivityType, SyncSide, CollisionRule };
}

/** The inbox: where a change event came from and where it stands. */
function inboxEnums(builder: Builder) {
  const ChangeSource = builder.enumType('ChangeSource', {
    description: 'Where a change event came from.',
    values: { MARKETO: {}, DYNAMICS: {}, OPERATOR: { description: 'requested through this API' } } as const,
  });
  const ChangeOrigin = builder.enumType('ChangeOrigin', {
    description: 'How a change event was discovered.',
    values: {
      WEBHOOK: { description: 'a Marketo webhook or a Dataverse step' },
      SWEEP: { description: 'the reconciliation sweep' },
      FLOW_ACTION: { description: 'the "Sync Person to Microsoft" flow action' },
      OPERATOR: { description: 'an operator request through this API' },
    } as const,
  });
  const ChangeEventStatus = builder.enumType('ChangeEventStatus', {
    description: 'Where a change event is in the inbox.',
    values: {
      PENDING: { description: 'waiting for a worker' },
      PROCESSING: { description: 'claimed by a worker (under a lease)' },
      DONE: { description: 'applied' },
      FAILED: { description: 'failed at least once; retried with backoff (reason in `reason`)' },
      DEAD: { description: 'out of retries; replay it with replayChangeEvent' },
    } as const,
  });
  return { ChangeSource, ChangeOrigin, ChangeEventStatus };
}

/** Mappings, sweeps and values held back. */
function operationEnums(builder: Builder) {
  const SyncDirection = builder.enumType('SyncDirection', {
    description: 'Which way a mapped field syncs.',
    values: { BOTH: {}, MARKETO_TO_DYNAMICS: {}, DYNAMICS_TO_MARKETO: {} } as const,
  });
  const SyncRunStatus = builder.enumType('SyncRunStatus', {
    description: 'How a sweep ended (or that it is still running).',
    values: {
      RUNNING: {},
      SUCCEEDED: {},
      FAILED: { description: 'ended by an error (in `error`)' },
      STOPPED: { description: 'stopped early on purpose (e.g. the API quota guard); `error` says why' },
    } as const,
  });
  const BlockReason = builder.enumType('BlockReason', {
    description: 'Why a value is held back from a side until it changes.',
    values: {
      VALIDATION: { description: 'Dynamics rejected it (business rule, plugin, bad option value)' },
      READ_ONLY: { description: 'the sync user may not update the field on that side' },
    } as const,
  });
  return { SyncDirection, SyncRunStatus, BlockReason };
}

export function createRefs(builder: Builder) {
  // registered in this order (the printed schema follows it)
  const enums = { ...linkEnums(builder), ...activityEnums(builder), ...inboxEnums(builder), ...operationEnums(builder) };
  const pageInfo = addPageInfo(builder);
  const SyncLinkRef = builder.objectRef<SyncLink>('SyncLink');
  const ActivityRef = builder.objectRef<Activity>('Activity');
  const CollisionRef = builder.objectRef<CollisionRow>('Collision');
  const ChangeEventRef = builder.objectRef<ChangeEvent>('ChangeEvent');
  const SyncRunRef = builder.objectRef<SyncRun>('SyncRun');
  const FieldMappingRef = builder.objectRef<FieldMapping>('FieldMapping');
  const SyncStatusRef = builder.objectRef<SyncStatusRow>('SyncStatus');

  return {
    enums,
    pageInfo,
    SyncLink: SyncLinkRef,
    Activity: ActivityRef,
    Collision: CollisionRef,
    ChangeEvent: ChangeEventRef,
    SyncRun: SyncRunRef,
    FieldMapping: FieldMappingRef,
    SyncStatus: SyncStatusRef,
    connections: {
      SyncLink: addConnection(builder, pageInfo, 'SyncLink', SyncLinkRef, 'A page of links, newest first.'),
      Activity: addConnection(builder, pageInfo, 'Activity', ActivityRef, 'A page of activity log entries, newest first.'),
      Collision: addConnection(builder, pageInfo, 'Collision', CollisionRef, 'A page of collisions, newest first.'),
      ChangeEvent: addConnection(builder, pageInfo, 'ChangeEvent', ChangeEventRef, 'A page of change events, newest received first.'),
      SyncRun: addConnection(builder, pageInfo, 'SyncRun', SyncRunRef, 'A page of sweeps, newest first.'),
    },
  };
}

export type Refs = ReturnType<typeof createRefs>;
