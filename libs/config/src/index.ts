export * from './env';
export * from './run';
export * from './nats-server';
export * from './secrets';
