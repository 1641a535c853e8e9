export * from './connect';
export * from './rpc-server';
export * from './rpc-client';
export * from './events';
export * from './event-history';
export * from './kv';
export * from './kv-mirror';
export { decodeJson, encodeJson } from './json';
