// End-to-end suites drive real dockerds: one file at a time, with long timeouts, because Docker
// operations, not our code, dominate their duration.
module.exports = (displayName, testTimeout = 180_000) => ({
  ...require('./jest.preset.js'),
  displayName,
  testMatch: ['<rootDir>/test/**/*.e2e.test.ts'],
  testTimeout,
  maxWorkers: 1,
});
