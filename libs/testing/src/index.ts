export * from './nats-server';
export * from './wait';
export * from './use-nats';
