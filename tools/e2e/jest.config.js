// End-to-end suites drive the machine's real dockerd; they run one at a time with long timeouts
// because Docker operations, not our code, dominate their duration.
module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'e2e',
  testMatch: ['<rootDir>/test/**/*.e2e.test.ts'],
  testTimeout: 180_000,
  maxWorkers: 1,
};
