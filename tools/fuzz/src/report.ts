import type { Finding, FuzzReport, TargetFigures } from './run';

/** The figures as a table, then the violations grouped by target and kind, each example with its replay. */
export function formatReport(r: FuzzReport, examples = 3): string {
  const columns = ['cases', 'answered', 'unanswerable', 'violations'] as const;
  const row = (name: string, t: TargetFigures) => [name, ...columns.map((c) => String(t[c]))];
  const total = Object.values(r.targets).reduce((s, t) => ({ cases: s.cases + t.cases, answered: s.answered + t.answered, unanswerable: s.unanswerable + t.unanswerable, violations: s.violations + t.violations }));
  const table = [['target', ...columns], ...Object.entries(r.targets).map(([name, t]) => row(name, t)), row('total', total)];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [
    `fuzz: seed ${r.seed}, ${r.cases} cases (unanswerable: sent without a reply subject, so only checked for crashes and changes)`,
    '',
    ...table.map(line),
    '',
    `error-format violations: ${r.violations.length}`,
    `crashes: ${r.crashes.length}`,
    `state changes: ${r.stateChanges.length}`,
    `elapsed: ${(r.elapsedMs / 1000).toFixed(1)} s (${Math.round(r.cases / (r.elapsedMs / 1000))} cases/s)`,
  ];
  for (const [kind, fs] of groups(r.violations)) {
    out.push('', `${fs.length} × ${kind}`);
    for (const f of fs.slice(0, examples)) out.push(`  case ${f.index}: ${f.problem}`, `    input: ${f.what}`, `    replay: npm run fuzz -- --seed=${r.seed} --only=${f.index}`);
  }
  for (const c of r.crashes) out.push('', `CRASH: ${c}`);
  for (const s of r.stateChanges) out.push('', `STATE CHANGED ${s}`);
  for (const [service, tail] of Object.entries(r.logs)) out.push('', `last lines of ${service}'s log:`, tail);
  return out.join('\n');
}

/** Violations of one target that fail alike (the problem's first words, numbers ignored) go together. */
function groups(fs: readonly Finding[]): Map<string, Finding[]> {
  const m = new Map<string, Finding[]>();
  for (const f of [...fs].sort((a, b) => a.index - b.index)) {
    const kind = `${f.target}: ${f.problem.replace(/\d+/g, 'N').slice(0, 60)}`;
    m.set(kind, [...(m.get(kind) ?? []), f]);
  }
  return m;
}
