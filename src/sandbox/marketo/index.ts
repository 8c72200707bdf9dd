export { defaultLeadReadFields, defaultMarketoFields, type MarketoDataType, type MarketoFieldDefinition } from './marketo.fields.ts';
export { createMarketoSimulatorApp, startMarketoSimulator, type StartedMarketoSimulator } from './marketo.simulator.ts';
export type { MarketoSimulatorAdmin } from './marketo.admin.ts';
export type {
  MarketoEndpoint,
  MarketoEndpointCounters,
  MarketoApiCall,
  MarketoFault,
  MarketoFeedOptions,
  MarketoRenderedActivity,
  MarketoSimulatorCounters,
  MarketoSimulatorLead,
  MarketoSimulatorLimits,
  MarketoSimulatorOptions,
} from './marketo.types.ts';
export { ActivityType, type MarketoChangeOrigin } from './marketo.store.ts';
export {
  renderWebhookTemplate,
  type MarketoWebhookCallResult,
  type MarketoWebhookDefinition,
  type MarketoWebhookTokens,
} from './marketo.webhook.ts';
