export * from './keyed-mutex';
export * from './wait-for';
export * from './passes';
