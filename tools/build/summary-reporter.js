// Appends each jest run's totals to $WEAVE_TEST_SUMMARY, so `npm test` can print one closing line
// ("N passed, N failed, N skipped") over every project Nx ran.
const { appendFileSync } = require('node:fs');

module.exports = class SummaryReporter {
  onRunComplete(_contexts, r) {
    const file = process.env.WEAVE_TEST_SUMMARY;
    if (!file) return;
    const failed = r.numFailedTests + r.numRuntimeErrorTestSuites;
    appendFileSync(file, JSON.stringify({ passed: r.numPassedTests, failed, skipped: r.numPendingTests + r.numTodoTests }) + '\n');
  }
};
