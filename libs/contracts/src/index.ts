export * from './primitives';
export * from './docker';
export * from './ports';
export * from './rpc';
export * from './readdress';
export * from './events';
export * from './subjects';
export * from './wire';
