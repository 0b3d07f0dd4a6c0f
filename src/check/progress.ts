import type { CheckProgress } from './run.ts';

/**
 * One self-rewriting line on a terminal ("validating 12/40 modules: ns/a, ns/b"), for long runs. Silent when the
 * stream is not a terminal, so pipes and CI logs get only the result.
 */
export class ProgressLine {
  readonly #stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  #shown = false;

  constructor(stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }) {
    this.#stream = stream;
  }

  update(progress: CheckProgress): void {
    if (this.#stream.isTTY !== true) return;
    const current = progress.inFlight.length > 0 ? `: ${progress.inFlight.join(', ')}` : '';
    const line = `validating ${progress.done}/${progress.total} modules${current}`;
    const width = Math.max(20, (this.#stream.columns ?? 80) - 1);
    this.#stream.write(`\r\u001b[2K${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
    this.#shown = true;
  }

  clear(): void {
    if (!this.#shown) return;
    this.#stream.write('\r\u001b[2K');
    this.#shown = false;
  }
}
