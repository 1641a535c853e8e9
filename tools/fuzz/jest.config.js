// The fuzz run starts a real stack (nats-server and service processes): a longer timeout.
module.exports = { ...require('../../jest.preset.js'), displayName: 'fuzz', testTimeout: 120_000 };
