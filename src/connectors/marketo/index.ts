export {
  createMarketoClient,
  marketoDripPlan,
  parseMarketoDate,
  type MarketoActivityPage,
  type MarketoClient,
  type MarketoClientOptions,
  type MarketoClientStats,
  type MarketoDeleteResult,
  type MarketoEndpointStats,
  type MarketoFieldDescription,
  type MarketoSyncAction,
  type MarketoSyncResult,
} from './marketo.client.ts';
export { MarketoApiError, MarketoCodes, isMarketoApiError, marketoErrorKind } from './marketo.errors.ts';
export type { MarketoActivity, MarketoDailyUsage, MarketoLead, MarketoReason } from './marketo.schemas.ts';
