export * from './nats-server';
export { waitFor } from '@weave/sync';
export * from './use-nats';
export * from './service-process';
