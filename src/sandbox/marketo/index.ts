export { defaultLeadReadFields, defaultMarketoFields, type MarketoDataType, type MarketoFieldDefinition } from './marketo.fields.ts';
export {
  createMarketoSimulatorApp,
  startMarketoSimulator,
  type MarketoEndpoint,
  type MarketoEndpointCounters,
  type MarketoApiCall,
  type MarketoFault,
  type MarketoFeedOptions,
  type MarketoRenderedActivity,
  type MarketoSimulatorAdmin,
  type MarketoSimulatorCounters,
  type MarketoSimulatorLead,
  type MarketoSimulatorLimits,
  type MarketoSimulatorOptions,
  type StartedMarketoSimulator,
} from './marketo.simulator.ts';
export { ActivityType, type MarketoChangeOrigin } from './marketo.store.ts';
export {
  renderWebhookTemplate,
  type MarketoWebhookCallResult,
  type MarketoWebhookDefinition,
  type MarketoWebhookTokens,
} from './marketo.webhook.ts';
