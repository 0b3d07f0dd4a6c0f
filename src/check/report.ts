import { styleText } from 'node:util';
import { stringify as toYaml } from 'yaml';
import type { ModuleVerificationStatus, PreflightValidationOCPStatus } from '../api/preflight.ts';

/**
 * Renders the offline check's result. JSON and YAML are the PreflightValidationOCP status object itself, so a
 * pipeline reads the same fields as `kubectl get pfvo -o yaml`; the table is for people; JUnit is for CI systems
 * (one test case per Module).
 */

export const OutputFormats = ['table', 'json', 'yaml', 'junit'] as const;
export type OutputFormat = (typeof OutputFormats)[number];

export interface RenderOptions {
  /** Colour the verdicts (only on a terminal, and never with NO_COLOR). */
  readonly color: boolean;
  /** The release image checked, if any (the table's heading). */
  readonly releaseImage?: string;
}

export function renderReport(
  status: PreflightValidationOCPStatus,
  format: OutputFormat,
  options: RenderOptions,
): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(status, null, 2)}\n`;
    case 'yaml':
      return toYaml(status);
    case 'junit':
      return renderJunit(status);
    case 'table':
      return renderTable(status, options);
  }
}

function renderTable(status: PreflightValidationOCPStatus, options: RenderOptions): string {
  const paint = (style: Parameters<typeof styleText>[0], text: string): string =>
    options.color ? styleText(style, text, { validateStream: false }) : text;
  const lines: string[] = [];
  const release = status.releaseVersion !== undefined ? `OpenShift ${status.releaseVersion}` : undefined;
  const heading = [release, options.releaseImage].filter((s) => s !== undefined).join(' ');
  if (heading !== '') lines.push(`Release: ${heading}`);
  if (status.targetKernel !== undefined) lines.push(`Kernel:  ${status.targetKernel}`);
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
  lines.push('');
  const verified = status.verified ?? modules.filter((m) => m.verificationStatus === 'True').length;
  const total = status.total ?? modules.length;
  const summary = `${verified}/${total} modules verified`;
  lines.push(
    verified === total ? paint('green', summary) : paint('red', `${summary}, ${total - verified} not`),
  );
  return `${lines.join('\n')}\n`;
}

function renderJunit(status: PreflightValidationOCPStatus): string {
  const modules = status.modules ?? [];
  const failures = modules.filter((m) => m.verificationStatus !== 'True').length;
  const suiteName = `kmm-preflight${status.targetKernel !== undefined ? ` ${status.targetKernel}` : ''}`;
  const cases = modules.map((m) => junitCase(m));
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="kmm-preflight" tests="${modules.length}" failures="${failures}">`,
    `  <testsuite name="${xml(suiteName)}" tests="${modules.length}" failures="${failures}" errors="0" skipped="0">`,
    ...cases,
    '  </testsuite>',
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
