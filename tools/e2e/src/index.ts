export * from './stack';
export * from './docker-scope';
export * from './host-links';
export * from './host-state';
export * from './use-stack';
export * from './listeners';
export * from './state-of-record';
export * from './private-dockerd';
