export * from './message';
export * from './stream';
