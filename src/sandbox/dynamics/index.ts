export {
  createDataverseSimulatorApp,
  createDataverseSimulatorState,
  startDataverseSimulator,
  type DataverseSimulator,
  type DataverseSimulatorAdmin,
  type DataverseSimulatorOptions,
  type DataverseSimulatorState,
  type EndpointCounter,
  type SimFault,
} from './dataverse.simulator.ts';
export type { AppliedRewrite, BusinessRule, ColumnGrant, ValueRewrite } from './dataverse.store.ts';
export type { WebhookDelivery, WebhookRegistration } from './webhook.emitter.ts';
