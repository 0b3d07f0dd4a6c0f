import type { CheckProgress } from './run.ts';

/**
 * One self-rewriting line on a terminal ("validating 12/40 modules: ns/a quay.io/a:k, ns/b ..."), for long runs.
 * Silent when the stream is not a terminal, so pipes and CI logs get only the result.
 */

type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** Terminals that report no width (0 or undefined, e.g. some CI pseudo-terminals) get this. */
const DEFAULT_COLUMNS = 80;

/** The progress line for a terminal `columns` wide: done/total, then each Module in flight with its image. */
export function renderProgressLine(progress: CheckProgress, columns: number | undefined): string {
  const current = progress.inFlight
    .map((m) => (m.image === undefined ? m.module : `${m.module} ${m.image}`))
    .join(', ');
  const line = `validating ${progress.done}/${progress.total} modules${current === '' ? '' : `: ${current}`}`;
  // One column short of the width: writing the last column makes some terminals wrap.
  const width = (columns !== undefined && columns > 0 ? columns : DEFAULT_COLUMNS) - 1;
  return line.length > width ? `${line.slice(0, Math.max(0, width - 1))}…` : line;
}

export class ProgressLine {
  readonly #stream: ProgressStream;
  #shown = false;

  constructor(stream: ProgressStream) {
    this.#stream = stream;
  }

  update(progress: CheckProgress): void {
    if (this.#stream.isTTY !== true) return;
    this.#stream.write(`\r\u001b[2K${renderProgressLine(progress, this.#stream.columns)}`);
    this.#shown = true;
  }

  clear(): void {
    if (!this.#shown) return;
    this.#stream.write('\r\u001b[2K');
    this.#shown = false;
  }
}
