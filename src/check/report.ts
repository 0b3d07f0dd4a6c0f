import { styleText } from 'node:util';
import { stringify as toYaml } from 'yaml';
import {
  PreflightConditionType,
  type ModuleVerificationStatus,
  type PreflightValidationOCPStatus,
} from '../api/preflight.ts';
import { inputProblemSource, type InputProblem } from './manifests.ts';

/**
 * Renders the offline check's result. JSON and YAML are the PreflightValidationOCP status object itself, so a
 * pipeline reads the same fields as `kubectl get pfvo -o yaml`, plus one top-level field `inputErrors` when some
 * input could not be read (absent otherwise); the table is for people; JUnit is for CI systems (one test case per
 * Module, and a failing one per input problem).
 */

export const OutputFormats = ['table', 'json', 'yaml', 'junit'] as const;
export type OutputFormat = (typeof OutputFormats)[number];

export interface CheckReport {
  readonly status: PreflightValidationOCPStatus;
  /** Files and documents that could not be read, or "no Module found": the run did not see everything. */
  readonly inputErrors: readonly InputProblem[];
}

export interface RenderOptions {
  /** Colour the verdicts (only on a terminal, and never with NO_COLOR). */
  readonly color: boolean;
  /** The release image checked, if any (the table's heading). */
  readonly releaseImage?: string;
}

export function renderReport(report: CheckReport, format: OutputFormat, options: RenderOptions): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(machineReadable(report), null, 2)}\n`;
    case 'yaml':
      return toYaml(machineReadable(report));
    case 'junit':
      return renderJunit(report);
    case 'table':
      return renderTable(report, options);
  }
}

/** The status object, with `inputErrors` only when there are any. */
function machineReadable(report: CheckReport): Record<string, unknown> {
  return report.inputErrors.length === 0
    ? { ...report.status }
    : { ...report.status, inputErrors: report.inputErrors };
}

function renderTable(report: CheckReport, options: RenderOptions): string {
  const { status, inputErrors } = report;
  const paint = (style: Parameters<typeof styleText>[0], text: string): string =>
    options.color ? styleText(style, text, { validateStream: false }) : text;
  const lines: string[] = [];
  const release = status.releaseVersion !== undefined ? `OpenShift ${status.releaseVersion}` : undefined;
  const heading = [release, options.releaseImage].filter((s) => s !== undefined).join(' ');
  if (heading !== '') lines.push(`Release: ${heading}`);
  const kernelResolved = status.conditions?.find((c) => c.type === PreflightConditionType.KernelResolved);
  if (status.targetKernel !== undefined) {
    lines.push(`Kernel:  ${status.targetKernel}`);
  } else if (kernelResolved?.status === 'False') {
    // Every entry fails for this one reason: say it once, where the kernel would be.
    lines.push(paint('red', `Kernel:  NOT RESOLVED (${kernelResolved.reason}): ${kernelResolved.message}`));
  }
  if (lines.length > 0) lines.push('');

  const modules = status.modules ?? [];
  const header = ['NAMESPACE', 'NAME', 'VERIFIED', 'STAGE', 'REASON'];
  const rows = modules.map((m) => [
    m.namespace,
    m.name,
    m.verificationStatus,
    m.verificationStage,
    m.statusReason ?? '',
  ]);
  const widths = header
    .slice(0, 4)
    .map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const pad = (cells: string[], colour: (i: number, s: string) => string): string =>
    cells
      .map((cell, i) => (i < widths.length ? colour(i, cell.padEnd(widths[i] ?? 0)) : colour(i, cell)))
      .join('  ')
      .trimEnd();
  lines.push(pad(header, (_i, s) => paint('bold', s)));
  for (const [index, row] of rows.entries()) {
    const verified = modules[index]?.verificationStatus === 'True';
    lines.push(pad(row, (i, s) => (i === 2 ? paint(verified ? 'green' : 'red', s) : s)));
  }
  if (inputErrors.length > 0) {
    lines.push('', paint('bold', 'INPUT ERRORS (not checked)'));
    for (const problem of inputErrors) {
      lines.push(`${paint('red', inputProblemSource(problem))}: ${problem.message}`);
    }
  }
  lines.push('');
  const verified = status.verified ?? modules.filter((m) => m.verificationStatus === 'True').length;
  const total = status.total ?? modules.length;
  const summary = `${verified}/${total} modules verified`;
  const unread =
    inputErrors.length === 0
      ? ''
      : `; ${inputErrors.length} input error${inputErrors.length === 1 ? '' : 's'}`;
  lines.push(
    verified === total && unread === ''
      ? paint('green', summary)
      : paint('red', `${summary}${verified === total ? '' : `, ${total - verified} not`}${unread}`),
  );
  return `${lines.join('\n')}\n`;
}

function renderJunit(report: CheckReport): string {
  const { status, inputErrors } = report;
  const modules = status.modules ?? [];
  const failures = modules.filter((m) => m.verificationStatus !== 'True').length;
  const suiteName = `kmm-preflight${status.targetKernel !== undefined ? ` ${status.targetKernel}` : ''}`;
  const tests = modules.length + inputErrors.length;
  const suites = [
    `  <testsuite name="${xml(suiteName)}" tests="${modules.length}" failures="${failures}" errors="0" skipped="0">`,
    ...modules.map((m) => junitCase(m)),
    '  </testsuite>',
  ];
  if (inputErrors.length > 0) {
    suites.push(
      `  <testsuite name="kmm-preflight input" tests="${inputErrors.length}" failures="${inputErrors.length}" errors="0" skipped="0">`,
      ...inputErrors.map((problem) => {
        const source = inputProblemSource(problem);
        const message = `${source}: ${problem.message}`;
        return `    <testcase classname="input" name="${xml(source)}"><failure message="${xml(message)}" type="InputError">${xml(message)}</failure></testcase>`;
      }),
      '  </testsuite>',
    );
  }
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="kmm-preflight" tests="${tests}" failures="${failures + inputErrors.length}">`,
    ...suites,
    '</testsuites>',
    '',
  ].join('\n');
}

function junitCase(m: ModuleVerificationStatus): string {
  const open = `    <testcase classname="${xml(m.namespace)}" name="${xml(m.name)}">`;
  if (m.verificationStatus === 'True') {
    return `${open}<system-out>${xml(m.statusReason ?? '')}</system-out></testcase>`;
  }
  const message = `${m.verificationStage}: ${m.statusReason ?? 'not verified'}`;
  return `${open}<failure message="${xml(message)}" type="${xml(m.verificationStage)}">${xml(message)}</failure></testcase>`;
}

/** XML 1.0 escaping for text and attribute values; control characters XML cannot carry are dropped. */
function xml(text: string): string {
  return text
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&apos;');
}
