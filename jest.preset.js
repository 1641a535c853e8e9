// Shared jest settings: ts-jest transpiling only (type checking is `npm run typecheck`'s job, so
// tests stay fast), node environment, and a reporter that feeds `npm test`'s closing line.
const { join } = require('node:path');

module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: join(__dirname, 'tsconfig.base.json') }] },
  moduleFileExtensions: ['ts', 'js', 'mjs', 'json'],
  testMatch: ['<rootDir>/src/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
  reporters: ['default', join(__dirname, 'tools/build/summary-reporter.js')],
};
