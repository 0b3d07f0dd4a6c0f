import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import {
  MalformedAdmissionReviewError,
  parseAdmissionReview,
  toAdmissionReviewResponse,
  type AdmissionReviewRequest,
  type AdmissionVerdict,
} from './admission-review.ts';
import {
  badRequestLabels,
  reviewLabels,
  type ReviewLabels,
  type ReviewOutcome,
  type WebhookMetrics,
} from './metrics.ts';

/**
 * The paths a ValidatingWebhookConfiguration points at: `/validate`, or `/validate/<anything>` for the same endpoint.
 * The shipped manifests use `/validate/preflightvalidationocp` and `/validate/module`, so the API server's webhook
 * metrics and any proxy's access log tell the two apart; the rules follow `request.resource`, never the path.
 */
export const VALIDATE_PATH = '/validate';
const VALIDATE_PATHS = [VALIDATE_PATH, `${VALIDATE_PATH}/:resource`];

/**
 * controller-runtime's limit: object and oldObject are each at most 3 MB (the API server's own request limit) plus
 * under 1 MB of envelope. Larger bodies are answered 413 without being read into memory.
 */
export const MAX_BODY_BYTES = 7 * 1024 * 1024;

/** Decides one admission request. Implementations never throw: failures become verdicts. */
export interface AdmissionDecider {
  decide(review: AdmissionReviewRequest): {
    readonly verdict: AdmissionVerdict;
    readonly outcome: ReviewOutcome;
  };
}

export interface AdmissionAppOptions {
  readonly decider: AdmissionDecider;
  readonly metrics: WebhookMetrics;
  readonly logger: Logger;
}

/**
 * The HTTP layer of the webhook: POST /validate takes an AdmissionReview and answers 200 with the verdict; a body
 * that is not JSON or not an AdmissionReview gets 400, one over 7 MiB gets 413, each with a JSON `{message}`.
 */
export function createAdmissionApp(options: AdmissionAppOptions): express.Express {
  const { decider, metrics, logger } = options;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((_req: Request, res: Response, next: NextFunction) => {
    const started = process.hrtime.bigint();
    metrics.requestStarted();
    res.once('close', () => {
      const labels = (res.locals as { review?: ReviewLabels }).review ?? badRequestLabels;
      metrics.requestFinished(labels, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  });
  app.post(
    VALIDATE_PATHS,
    // The API server always sends application/json; parse whatever arrives so a wrong header is a clear 400.
    express.json({ limit: MAX_BODY_BYTES, strict: true, type: () => true }),
    (req: Request, res: Response) => {
      const review = parseAdmissionReview(req.body);
      const { verdict, outcome } = decider.decide(review);
      (res.locals as { review?: ReviewLabels }).review = reviewLabels(review.request, outcome);
      res.status(200).json(toAdmissionReviewResponse(review, verdict));
    },
  );
  app.use((req: Request, res: Response) => {
    res.status(404).json({
      message: `no route for ${req.method} ${req.path}; admission reviews go to POST ${VALIDATE_PATH}`,
    });
  });
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const { status, message } = describeRequestError(err);
    if (status >= 500) {
      logger.error({ err: errorSummary(err), path: req.path }, 'admission request failed');
    } else {
      logger.debug({ err: errorSummary(err), status, path: req.path }, 'admission request rejected');
    }
    res.status(status).json({ message });
  });
  return app;
}

/** Maps body-parser's and our own errors to a status and a message that quotes nothing from the body. */
function describeRequestError(err: unknown): { status: number; message: string } {
  if (err instanceof MalformedAdmissionReviewError) return { status: 400, message: err.message };
  const parserError = err as { type?: unknown; status?: unknown };
  switch (parserError.type) {
    case 'entity.too.large':
      return { status: 413, message: `request body is larger than the ${MAX_BODY_BYTES} byte limit` };
    case 'entity.parse.failed':
      return { status: 400, message: 'request body is not valid JSON' };
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return { status: 400, message: 'request body encoding or charset is not supported; send UTF-8 JSON' };
    default:
      break;
  }
  if (typeof parserError.status === 'number' && parserError.status >= 400 && parserError.status < 500) {
    return { status: 400, message: 'request body could not be read' };
  }
  return { status: 500, message: 'internal error while reading the admission request' };
}

/** What may be logged of an error: its class, code and type, never its message (it can quote the body). */
function errorSummary(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { value: typeof err };
  const { code, type } = err as { code?: unknown; type?: unknown };
  return { name: err.name, code, type };
}
