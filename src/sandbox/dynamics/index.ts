export { createDataverseSimulatorApp, startDataverseSimulator, type DataverseSimulator } from './dataverse.simulator.ts';
export {
  createDataverseSimulatorState,
  type DataverseSimulatorOptions,
  type DataverseSimulatorState,
  type EndpointCounter,
  type SimFault,
} from './dataverse.state.ts';
export type { DataverseSimulatorAdmin } from './dataverse.admin.ts';
export type { AppliedRewrite, BusinessRule, ColumnGrant, ValueRewrite } from './dataverse.types.ts';
export type { WebhookDelivery, WebhookRegistration } from './webhook.emitter.ts';
