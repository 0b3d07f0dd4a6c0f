import { XMLParser } from 'fast-xml-parser';
import type { PreflightValidationOCPStatus } from '../../src/api/preflight.ts';

/**
 * Reads the check's table and JUnit back the way their consumers would (a person's eye by columns, a CI system by
 * an XML parser), so tests compare every output format with the JSON status instead of matching substrings.
 */

/** One test case as a CI system sees it: passed with its output, or failed with message and type. */
export type JunitCase =
  { readonly passed: string } | { readonly failed: string; readonly type: string; readonly body: string };

export interface ParsedJunit {
  readonly tests: number;
  readonly failures: number;
  /** By `classname/name`: `namespace/name` for Modules, `input/<file>#<document>` for input errors. */
  readonly cases: Readonly<Record<string, JunitCase>>;
}

interface XmlCase {
  '@_classname': string;
  '@_name': string;
  'system-out'?: string;
  failure?: { '@_message': string; '@_type': string; '#text'?: string };
}

interface XmlSuite {
  '@_tests': string;
  '@_failures': string;
  testcase?: XmlCase[];
}

export function parseJunit(xml: string): ParsedJunit {
  const parser = new XMLParser({
    ignoreAttributes: false,
    parseAttributeValue: false,
    parseTagValue: false,
    trimValues: false,
    isArray: (name) => name === 'testsuite' || name === 'testcase',
  });
  const document = parser.parse(xml, true) as {
    testsuites: { '@_tests': string; '@_failures': string; testsuite: XmlSuite[] };
  };
  const cases: Record<string, JunitCase> = {};
  let suiteTests = 0;
  for (const suite of document.testsuites.testsuite) {
    suiteTests += Number(suite['@_tests']);
    for (const testcase of suite.testcase ?? []) {
      const key = `${testcase['@_classname']}/${testcase['@_name']}`;
      const failure = testcase.failure;
      cases[key] =
        failure === undefined
          ? { passed: testcase['system-out'] ?? '' }
          : { failed: failure['@_message'], type: failure['@_type'], body: failure['#text'] ?? '' };
    }
  }
  const tests = Number(document.testsuites['@_tests']);
  if (tests !== suiteTests || tests !== Object.keys(cases).length) {
    throw new Error(
      `JUnit counts disagree: ${tests} tests, suites say ${suiteTests}, ${Object.keys(cases).length} cases`,
    );
  }
  return { tests, failures: Number(document.testsuites['@_failures']), cases };
}

/** The JUnit test cases the JSON status calls for, one per module entry. */
export function junitCasesOf(status: PreflightValidationOCPStatus): Record<string, JunitCase> {
  return Object.fromEntries(
    (status.modules ?? []).map((m) => {
      const reason = m.statusReason ?? '';
      const message = `${m.verificationStage}: ${reason}`;
      const expected: JunitCase =
        m.verificationStatus === 'True'
          ? { passed: reason }
          : { failed: message, type: m.verificationStage, body: message };
      return [`${m.namespace}/${m.name}`, expected];
    }),
  );
}

/** The module entries of a status as the table shows them: by name, [verificationStatus, stage, reason]. */
export function statusRows(status: PreflightValidationOCPStatus): Record<string, [string, string, string]> {
  return Object.fromEntries(
    (status.modules ?? []).map((m) => [
      m.name,
      [m.verificationStatus, m.verificationStage, m.statusReason ?? ''],
    ]),
  );
}

/** The table's module rows by NAME: [VERIFIED, STAGE, REASON], cut at the header's column starts. */
export function tableRows(table: string): Record<string, [string, string, string]> {
  const lines = table.split('\n');
  const headerAt = lines.findIndex((l) => /^NAMESPACE\s+NAME\s+VERIFIED\s+STAGE\s+REASON$/.test(l));
  if (headerAt < 0) throw new Error(`no table header in:\n${table}`);
  const header = lines[headerAt] ?? '';
  const starts = ['NAME', 'VERIFIED', 'STAGE', 'REASON'].map((column) => header.indexOf(` ${column}`) + 1);
  const [name = 0, verified = 0, stage = 0, reason = 0] = starts;
  const rows: Record<string, [string, string, string]> = {};
  for (const line of lines.slice(headerAt + 1)) {
    if (line.trim() === '') break;
    rows[line.slice(name, verified).trim()] = [
      line.slice(verified, stage).trim(),
      line.slice(stage, reason).trim(),
      line.slice(reason),
    ];
  }
  return rows;
}
