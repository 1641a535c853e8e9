module.exports = { ...require('../../jest.e2e-preset.js')('e2e'), globalTeardown: '<rootDir>/test/global-teardown.ts' };
