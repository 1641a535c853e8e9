// Appends each jest run's totals, and the names of the tests that failed, to $WEAVE_TEST_SUMMARY,
// so `npm test` can close with one line over every project Nx ran and, under it, what failed:
// CI keeps only the tail of the output, where a failure's name must be.
const { appendFileSync } = require('node:fs');
const { relative } = require('node:path');

const firstLines = (messages) =>
  messages
    .join('\n')
    .replace(/\x1b\[[0-9;]*m/g, '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(0, 4)
    .join(' | ')
    .slice(0, 600);

module.exports = class SummaryReporter {
  onRunComplete(_contexts, r) {
    const file = process.env.WEAVE_TEST_SUMMARY;
    if (!file) return;
    const failures = [];
    for (const suite of r.testResults) {
      const path = relative(process.cwd(), suite.testFilePath);
      if (suite.testExecError) failures.push({ test: path, message: firstLines([suite.testExecError.message ?? String(suite.testExecError)]) });
      for (const t of suite.testResults) {
        if (t.status === 'failed') failures.push({ test: `${path} › ${t.fullName}`, message: firstLines(t.failureMessages) });
      }
    }
    const failed = r.numFailedTests + r.numRuntimeErrorTestSuites;
    appendFileSync(file, JSON.stringify({ passed: r.numPassedTests, failed, skipped: r.numPendingTests + r.numTodoTests, failures }) + '\n');
  }
};
