module.exports = require('../../jest.e2e-preset.js')('e2e');
