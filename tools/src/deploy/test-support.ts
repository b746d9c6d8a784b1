/**
 * Renders the shipped Kubernetes manifests with `kubectl kustomize` and
 * validates every object, for the deploy tests:
 * - against the Kubernetes OpenAPI schemas compiled into `kubernetes-models`
 *   (types, required fields, enums, formats) and `@kubernetes-models/prometheus-operator`
 *   for the ServiceMonitor;
 * - for unknown fields (a misspelt `readinesProbe` passes those schemas, which
 *   allow extra properties; the API server drops or refuses it), walking the
 *   object along the attribute maps `@kubernetes/client-node` generates from
 *   the same OpenAPI document;
 * - Chaos Mesh experiments against the spec schemas vendored from its CRDs
 *   (deploy/kubernetes/chaos/chaos-mesh-spec.schema.json), with Ajv.
 */

import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Ajv } from 'ajv';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);

export const repoRoot = path.resolve(import.meta.dirname, '../../..');
export const kubernetesDir = path.join(repoRoot, 'deploy/kubernetes');

/** A Kubernetes object as rendered: plain JSON. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export function kubectlPath(): string | undefined {
  return ['/usr/bin/kubectl', '/usr/local/bin/kubectl'].find((p) => existsSync(p));
}

/** `kubectl kustomize <dir>` (offline), parsed into objects. */
export async function renderKustomization(dir: string): Promise<KubeObject[]> {
  const kubectl = kubectlPath();
  if (kubectl === undefined) throw new Error('kubectl is not installed (Debian package kubectl)');
  const { stdout } = await run(kubectl, ['kustomize', dir], { maxBuffer: 16 * 1024 * 1024 });
  return parseManifests(stdout);
}

export function parseManifests(text: string): KubeObject[] {
  return parseAllDocuments(text).flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(`YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as KubeObject | null | undefined;
    return value === null || value === undefined ? [] : [value];
  });
}

/** Where an object breaks a schema, as `path: message` lines; empty when it is valid. */
export type Problems = string[];

// --- Unknown fields, along @kubernetes/client-node's generated attribute maps -------------------------------

interface Attribute {
  baseName: string;
  type: string;
}
type ModelClass = { getAttributeTypeMap(): Attribute[] };
const models = k8s as unknown as Record<string, ModelClass | undefined>;

const SCALARS = new Set(['string', 'number', 'boolean', 'Date', 'IntOrString']);

/** The generated model's name for a kind: `apps/v1` Deployment → V1Deployment, `autoscaling/v2` HorizontalPodAutoscaler → V2HorizontalPodAutoscaler. */
function modelName(apiVersion: string, kind: string): string {
  const version = apiVersion.split('/').at(-1) ?? '';
  return `${version.charAt(0).toUpperCase()}${version.slice(1)}${kind}`;
}

function unknownFields(value: unknown, type: string, at: string, problems: Problems): void {
  if (value === null || value === undefined || type === 'any' || type === 'object') return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((item, i) => unknownFields(item, array[1] ?? 'any', `${at}/${i}`, problems));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') for (const [key, item] of Object.entries(value)) unknownFields(item, map[1] ?? 'any', `${at}/${key}`, problems);
    return;
  }
  if (SCALARS.has(type)) return;
  const model = models[type];
  if (model === undefined) throw new Error(`no generated model ${type} (at ${at || '/'})`);
  if (typeof value !== 'object' || Array.isArray(value)) return; // the schema validation reports the type
  const attributes = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [key, item] of Object.entries(value)) {
    const fieldType = attributes.get(key);
    if (fieldType === undefined) problems.push(`${at}/${key}: unknown field in ${type}`);
    else unknownFields(item, fieldType, `${at}/${key}`, problems);
  }
}

// --- Schemas ------------------------------------------------------------------------------------------------

interface Validating {
  validate(): void;
}
// The models' constructors want their own typed shapes; the rendered objects are what is being checked.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ValidatingClass = new (data: any) => Validating;

/** The schema-carrying models of the kinds the manifests use: kubernetes-models, and its prometheus-operator package. */
const SCHEMA_MODELS: Record<string, ValidatingClass> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

function schemaModel(object: KubeObject): ValidatingClass {
  const model = SCHEMA_MODELS[`${object.apiVersion}/${object.kind}`];
  if (model === undefined) throw new Error(`no schema for ${object.apiVersion} ${object.kind}: add its model to SCHEMA_MODELS`);
  return model;
}

function schemaProblems(model: ValidatingClass, object: KubeObject): Problems {
  try {
    new model(object).validate();
    return [];
  } catch (err) {
    return [(err as Error).message];
  }
}

const chaosSchemaFile = path.join(kubernetesDir, 'chaos/chaos-mesh-spec.schema.json');
let chaosValidators: Map<string, (spec: unknown) => Problems> | undefined;

function chaosValidator(kind: string): ((spec: unknown) => Problems) | undefined {
  if (chaosValidators === undefined) {
    const schema = JSON.parse(readFileSync(chaosSchemaFile, 'utf8')) as { definitions: Record<string, object> };
    const ajv = new Ajv({ allErrors: true });
    ajv.addKeyword('x-kubernetes-list-type');
    ajv.addKeyword('x-kubernetes-list-map-keys');
    ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
    ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
    ajv.addSchema(schema, 'chaos');
    chaosValidators = new Map(
      Object.keys(schema.definitions).map((name) => {
        const validate = ajv.getSchema(`chaos#/definitions/${name}`);
        if (validate === undefined) throw new Error(`no ${name} in the Chaos Mesh schema`);
        return [name, (spec: unknown) => (validate(spec) ? [] : (validate.errors ?? []).map((e) => `spec${e.instancePath}: ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`))];
      }),
    );
  }
  return chaosValidators.get(kind);
}

const TOP_LEVEL = new Set(['apiVersion', 'kind', 'metadata', 'spec']);

/** Every problem of one rendered object: schema violations and unknown fields. */
export function validateObject(object: KubeObject): Problems {
  if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string') return ['apiVersion and kind are required'];
  const problems: Problems = [];
  if (object.apiVersion === 'chaos-mesh.org/v1alpha1') {
    const validate = chaosValidator(object.kind);
    if (validate === undefined) return [`${object.kind}: not a Chaos Mesh kind this repository has a schema for`];
    for (const key of Object.keys(object)) if (!TOP_LEVEL.has(key)) problems.push(`/${key}: unknown field`);
    unknownFields(object.metadata, 'V1ObjectMeta', '/metadata', problems);
    if (typeof object.metadata?.name !== 'string') problems.push('/metadata/name: required');
    return [...problems, ...validate(object.spec)];
  }
  problems.push(...schemaProblems(schemaModel(object), object));
  if (object.apiVersion === 'monitoring.coreos.com/v1') {
    // Not in the client's models: the metadata and the top level only.
    for (const key of Object.keys(object)) if (!TOP_LEVEL.has(key)) problems.push(`/${key}: unknown field`);
    unknownFields(object.metadata, 'V1ObjectMeta', '/metadata', problems);
  } else {
    unknownFields(object, modelName(object.apiVersion, object.kind), '', problems);
  }
  return problems;
}
