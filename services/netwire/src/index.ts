// Public surface for tests and tools; the service itself starts from main.ts.
export * from './env';
export * from './firewall';
export * from './kernel';
export * from './kernel-fake';
export * from './kernel-linux';
export * from './mac';
export * from './mtu';
export * from './names';
export * from './ports';
export * from './netwire';
export * from './reconcile';
export * from './service';
export * from './store';
export * from './sweep';
