import { checkModuleStructure, checkPreflightSpecStructure, fieldPath } from '../api/structure.ts';
import type { FieldIssue } from '../api/structure.ts';
import { parseImageReference } from '../image/reference.ts';
import { RegexpCache } from './regexp.ts';
import { containerImageVariables, kernelVariables, substitute } from './substitute.ts';
import type { Variables } from './substitute.ts';
import { parseKernelVersion } from './version.ts';
import type { KernelVersion } from './version.ts';

/**
 * Module and PreflightValidationOCP spec rules, for the webhook and the offline check. Each returns every problem
 * at once, each naming its exact field path (`spec.moduleLoader.container.kernelMappings[2].regexp`). Input is
 * `unknown` (an admission request or a YAML file): structural problems come from the CRD schema
 * (src/api/structure.ts), and the rules below read defensively so one malformed field never hides the others.
 *
 * The Module rules are KMM's webhook rules (kmm-anchor.md 6) plus what preflight needs: every image, after
 * variable substitution, must parse as an image reference.
 */

const CONTAINER = 'spec.moduleLoader.container';

/**
 * Images are checked after substitution with a kernel: a mapping's literal when it is a kernel version, else this
 * representative RHEL 9 kernel (the variables only ever produce `[A-Za-z0-9._-]`, so any valid kernel would do).
 */
export const SAMPLE_KERNEL = '5.14.0-427.13.1.el9_4.x86_64';

export interface ValidateOptions {
  readonly regexps?: RegexpCache;
}

const defaultRegexps = new RegexpCache();

type Fields = Readonly<Record<string, unknown>>;

function record(value: unknown): Fields | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Fields) : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function list(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : [];
}

/** SAMPLE_KERNEL parsed once: every image check of every Module substitutes with it. */
const sampleKernelVersion = ((): KernelVersion => {
  const sample = parseKernelVersion(SAMPLE_KERNEL);
  if (!sample.ok) throw new Error(`SAMPLE_KERNEL is not a kernel version: ${sample.error.message}`);
  return sample.data;
})();

/** The kernel a mapping's images are checked with: its literal when that is a kernel version, else the sample. */
function sampleKernel(literal: string | undefined): KernelVersion {
  if (literal === undefined) return sampleKernelVersion;
  const candidate = parseKernelVersion(literal);
  return candidate.ok ? candidate.data : sampleKernelVersion;
}

export function validateModule(input: unknown, options: ValidateOptions = {}): FieldIssue[] {
  const issues = checkModuleStructure(input);
  const module = record(input);
  const metadata = record(module?.metadata);
  if (text(metadata?.name) === undefined) issues.push({ path: 'metadata.name', message: 'is required' });
  const container = record(record(record(module?.spec)?.moduleLoader)?.container);
  if (container === undefined) return dedupe(issues);

  const name = text(metadata?.name) ?? 'module';
  const namespace = text(metadata?.namespace) ?? 'default';
  issues.push(
    ...checkModprobe(record(container.modprobe)),
    ...checkKernelMappings(container, name, namespace, options.regexps ?? defaultRegexps),
    ...checkInTreeModules(container, CONTAINER),
  );
  return dedupe(issues);
}

/** KMM's update-only rule: a Module cannot gain or lose `version` in place. */
export function validateModuleUpdate(oldInput: unknown, newInput: unknown): FieldIssue[] {
  const version = (input: unknown): string | undefined =>
    text(record(record(record(record(input)?.spec)?.moduleLoader)?.container)?.version);
  if ((version(oldInput) === undefined) === (version(newInput) === undefined)) return [];
  return [
    {
      path: `${CONTAINER}.version`,
      message: 'cannot update to or from an empty version; delete the Module and create it again',
    },
  ];
}

function checkModprobe(modprobe: Fields | undefined): FieldIssue[] {
  if (modprobe === undefined) return [];
  const path = `${CONTAINER}.modprobe`;
  const issues: FieldIssue[] = [];
  const moduleName = text(modprobe.moduleName);
  const rawArgs = record(modprobe.rawArgs);
  if (moduleName !== undefined && rawArgs !== undefined) {
    issues.push({ path: `${path}.rawArgs`, message: 'rawArgs cannot be set when moduleName is set' });
  }
  if (moduleName === undefined && (list(rawArgs?.load).length === 0 || list(rawArgs?.unload).length === 0)) {
    issues.push({
      path: `${path}.moduleName`,
      message: 'set moduleName, or leave it unset and set both rawArgs.load and rawArgs.unload',
    });
  }

  const order = list(modprobe.modulesLoadingOrder);
  if (order.length > 0) {
    const orderPath = `${path}.modulesLoadingOrder`;
    if (order.length < 2) {
      issues.push({
        path: orderPath,
        message: 'needs at least 2 entries (moduleName first, then what it needs loaded)',
      });
    }
    if (moduleName === undefined) {
      issues.push({ path: `${path}.moduleName`, message: 'is required when modulesLoadingOrder is set' });
    } else if (order[0] !== moduleName) {
      issues.push({ path: `${orderPath}[0]`, message: `must be moduleName "${moduleName}"` });
    }
    const seen = new Map<unknown, number>();
    for (const [index, entry] of order.entries()) {
      const first = seen.get(entry);
      if (first !== undefined) {
        issues.push({ path: `${orderPath}[${index}]`, message: `duplicates ${orderPath}[${first}]` });
      } else {
        seen.set(entry, index);
      }
    }
  }
  return issues;
}

function checkKernelMappings(
  container: Fields,
  name: string,
  namespace: string,
  regexps: RegexpCache,
): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const containerImage = text(container.containerImage);
  const containerBuild = record(container.build);
  const containerSign = record(container.sign);
  const images = new ImageChecks(issues, name, namespace);
  if (containerImage !== undefined) images.withSampleKernel(`${CONTAINER}.containerImage`, containerImage);
  // A substitution fails on its syntax, never on the values: the Module's files are checked once, not per mapping.
  issues.push(...checkFilesToSign(containerSign, `${CONTAINER}.sign`));

  for (const [index, item] of list(container.kernelMappings).entries()) {
    const mapping = record(item);
    if (mapping === undefined) continue;
    const path = `${CONTAINER}.kernelMappings[${index}]`;
    const literal = text(mapping.literal);
    const regexp = text(mapping.regexp);
    if (literal !== undefined && regexp !== undefined) {
      issues.push({ path, message: 'literal and regexp are mutually exclusive: set only one' });
    } else if (literal === undefined && regexp === undefined) {
      issues.push({ path, message: 'set literal (an exact kernel) or regexp (an RE2 pattern)' });
    }
    if (regexp !== undefined) {
      const compiled = regexps.compile(regexp);
      if (!compiled.ok)
        issues.push({ path: `${path}.regexp`, message: `invalid RE2 regexp: ${compiled.message}` });
    }

    const mappingImage = text(mapping.containerImage);
    if (mappingImage === undefined && containerImage === undefined) {
      issues.push({
        path: `${path}.containerImage`,
        message: `no container image: set it here or at ${CONTAINER}.containerImage`,
      });
    } else if (mappingImage !== undefined) {
      if (literal === undefined) {
        images.withSampleKernel(`${path}.containerImage`, mappingImage);
      } else {
        images.check(`${path}.containerImage`, mappingImage, () =>
          containerImageVariables(sampleKernel(literal), name, namespace),
        );
      }
    } else if (
      literal !== undefined &&
      containerImage?.includes('$') === true &&
      images.sampleKernelAccepts(containerImage)
    ) {
      // The mapping inherits the Module's image, which the runner substitutes with this literal kernel: a long
      // literal can make a tag that the sample kernel did not (over 128 characters).
      images.check(
        `${CONTAINER}.containerImage`,
        containerImage,
        () => containerImageVariables(sampleKernel(literal), name, namespace),
        `for ${path} (literal "${literal}")`,
      );
    }

    const mappingBuild = record(mapping.build);
    if (
      (mappingBuild !== undefined || containerBuild !== undefined) &&
      !hasName(mappingBuild, containerBuild, 'dockerfileConfigMap')
    ) {
      issues.push({
        path: `${mappingBuild === undefined ? `${CONTAINER}.build` : `${path}.build`}.dockerfileConfigMap`,
        message:
          'a build needs dockerfileConfigMap (a ConfigMap with the Dockerfile under the key "dockerfile")',
      });
    }

    const mappingSign = record(mapping.sign);
    if (mappingSign !== undefined || containerSign !== undefined) {
      const signPath = mappingSign === undefined ? `${CONTAINER}.sign` : `${path}.sign`;
      for (const secret of ['keySecret', 'certSecret'] as const) {
        if (!hasName(mappingSign, containerSign, secret)) {
          issues.push({
            path: `${signPath}.${secret}`,
            message: `a sign section needs ${secret} (a Secret with the ${secret === 'keySecret' ? 'private key under "key"' : 'certificate under "cert"'})`,
          });
        }
      }
      const unsignedImage = text(mappingSign?.unsignedImage) ?? text(containerSign?.unsignedImage);
      if (unsignedImage !== undefined) {
        const unsignedPath =
          text(mappingSign?.unsignedImage) !== undefined ? `${path}.sign` : `${CONTAINER}.sign`;
        images.check(`${unsignedPath}.unsignedImage`, unsignedImage, () =>
          kernelVariables(sampleKernel(literal)),
        );
      }
      issues.push(...checkFilesToSign(mappingSign, `${path}.sign`));
    }
    issues.push(...checkInTreeModules(mapping, path));
  }
  return issues;
}

/** True if `key` names an object (`{name}`) on the mapping's section or, failing that, the container's. */
function hasName(
  mappingSection: Fields | undefined,
  containerSection: Fields | undefined,
  key: string,
): boolean {
  return [mappingSection, containerSection].some(
    (section) => text(record(section?.[key])?.name) !== undefined,
  );
}

/** Checks that a Module's images parse after substitution, adding one issue per image that does not. */
class ImageChecks {
  readonly #issues: FieldIssue[];
  readonly #name: string;
  readonly #namespace: string;
  #sampleVariables: Variables | undefined;
  /**
   * Template → its problem (undefined: none) with the sample kernel's variables. Those are the same for the
   * Module's image and every mapping without a literal, which mostly share one template (`...:${KERNEL_FULL_VERSION}`).
   */
  readonly #sampleProblems = new Map<string, string | undefined>();

  constructor(issues: FieldIssue[], name: string, namespace: string) {
    this.#issues = issues;
    this.#name = name;
    this.#namespace = namespace;
  }

  /** An image with the Module's variables for SAMPLE_KERNEL. */
  withSampleKernel(path: string, template: string): void {
    const problem = this.#sampleProblem(template);
    if (problem !== undefined) this.#issues.push({ path, message: problem });
  }

  /** Whether the image is valid with the sample kernel (memoised like withSampleKernel; reports nothing). */
  sampleKernelAccepts(template: string): boolean {
    return this.#sampleProblem(template) === undefined;
  }

  #sampleProblem(template: string): string | undefined {
    if (this.#sampleProblems.has(template)) return this.#sampleProblems.get(template);
    const problem = imageProblem(
      template,
      () =>
        (this.#sampleVariables ??= containerImageVariables(sampleKernelVersion, this.#name, this.#namespace)),
    );
    this.#sampleProblems.set(template, problem);
    return problem;
  }

  /** An image with the given variables; `context` says which kernel they came from when the path does not. */
  check(path: string, template: string, variables: () => Variables, context?: string): void {
    const problem = imageProblem(template, variables);
    if (problem !== undefined) {
      this.#issues.push({ path, message: context === undefined ? problem : `${context}: ${problem}` });
    }
  }
}

/**
 * Each sign.filesToSign entry must substitute (the runner fails it otherwise). KMM appends the mapping's files to
 * the Module's and substitutes the kernel variables only; the sample kernel's serve, since only syntax can fail.
 */
function checkFilesToSign(section: Fields | undefined, path: string): FieldIssue[] {
  const issues: FieldIssue[] = [];
  for (const [index, file] of list(section?.filesToSign).entries()) {
    if (typeof file !== 'string' || !file.includes('$')) continue;
    const substituted = substitute(file, kernelVariables(sampleKernelVersion));
    if (!substituted.ok)
      issues.push({ path: `${path}.filesToSign[${index}]`, message: substituted.error.message });
  }
  return issues;
}

/**
 * Why an image template does not give a valid image reference, or undefined when it does. A template without `$`
 * substitutes to itself, so it needs no variables (and its mapping's literal is not parsed as a kernel).
 */
function imageProblem(template: string, variables: () => Variables): string | undefined {
  let image = template;
  if (template.includes('$')) {
    const substituted = substitute(template, variables());
    if (!substituted.ok) return substituted.error.message;
    image = substituted.data;
  }
  const reference = parseImageReference(image);
  if (reference.ok) return undefined;
  const shown = image === template ? '' : ` (after substitution: "${image}")`;
  return `${reference.error.message}${shown}`;
}

function checkInTreeModules(section: Fields, path: string): FieldIssue[] {
  if (text(section.inTreeModuleToRemove) !== undefined && section.inTreeModulesToRemove !== undefined) {
    return [
      {
        path: `${path}.inTreeModuleToRemove`,
        message: 'inTreeModuleToRemove (deprecated) and inTreeModulesToRemove are mutually exclusive',
      },
    ];
  }
  return [];
}

/** Removes repeats of the same problem (a Module-level section is checked once per mapping that inherits it). */
function dedupe(issues: readonly FieldIssue[]): FieldIssue[] {
  const seen = new Set<string>();
  return issues.filter((issue) => {
    const key = `${issue.path}\u0000${issue.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export interface PreflightSpecOptions {
  /** Accept `oci:<dir>` release images (the offline check reads releases from disk; a cluster cannot). */
  readonly allowOciLayout?: boolean;
}

/** PreflightValidationOCP `spec`: the CRD schema, and a releaseImage that parses as an image reference. */
export function validatePreflightSpec(spec: unknown, options: PreflightSpecOptions = {}): FieldIssue[] {
  const issues = checkPreflightSpecStructure(spec);
  const releaseImage = record(spec)?.releaseImage;
  if (typeof releaseImage !== 'string' || releaseImage === '') return issues;
  const path = fieldPath('spec', 'releaseImage');
  const reference = parseImageReference(releaseImage);
  if (!reference.ok) {
    issues.push({ path, message: reference.error.message });
  } else if (reference.data.kind === 'oci-layout' && options.allowOciLayout !== true) {
    issues.push({
      path,
      message: `"${releaseImage}" is an OCI layout on disk; a cluster needs a registry image (e.g. quay.io/openshift-release-dev/ocp-release@sha256:...)`,
    });
  }
  return issues;
}
