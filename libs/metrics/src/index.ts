export * from './exposition';
export * from './registry';
export * from './server';
export * from './env';
export * from './calls';
export * from './scrape';
