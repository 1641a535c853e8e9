export * from './keyed-mutex';
