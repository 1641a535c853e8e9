// The mesh suite starts several dockerds and NATS clusters: one at a time, long timeouts.
module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'meshsim',
  testMatch: ['<rootDir>/test/**/*.e2e.test.ts'],
  testTimeout: 300_000,
  maxWorkers: 1,
};
