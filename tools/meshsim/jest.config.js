// The mesh suite starts several dockerds and a NATS cluster: a longer timeout.
module.exports = require('../../jest.e2e-preset.js')('meshsim', 300_000);
