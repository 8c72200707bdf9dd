export {
  createDataverseClient,
  dataverseEntitySets,
  parseRetryAfter,
  type DataverseAttribute,
  type DataverseChangePage,
  type DataverseClient,
  type DataverseClientOptions,
  type DataverseClientStats,
  type DataverseColumnAccess,
  type DataverseEntity,
  type DataverseOwner,
  type DataverseRecord,
} from './dataverse.client.ts';
export * from './dataverse.errors.ts';
export type { DataverseIdentity } from './dataverse.schemas.ts';
export {
  parseDataverseWebhook,
  parseWcfDate,
  plainWebhookValue,
  remoteExecutionContextSchema,
  type DataverseEntityReference,
  type DataverseWebhookNotice,
  type DataverseWebhookValue,
  type ParseDataverseWebhookResult,
  type RemoteExecutionContext,
} from './webhook-context.ts';
