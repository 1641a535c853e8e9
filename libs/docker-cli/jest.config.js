module.exports = { ...require('../../jest.preset.js'), displayName: 'docker-cli' };
