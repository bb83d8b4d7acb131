/**
 * The edge agent's public surface: start it in-process (tests, embedding)
 * (`run`, as `main.ts` does) and check its configuration.
 *
 * @module
 */
export {
  type CheckedEdgeConfig,
  checkEdgeConfig,
  DEFAULT_INLETS,
  DEFAULT_LICENSE_HEADER,
  DEFAULT_OPS,
  type EdgeConfig,
  edgePermissionFlags,
  edgePermissions,
  type InletConfig,
  loadEdgeConfig,
  parseInletFlag,
  readEdgeSecrets,
} from "./config.ts";
export { type EdgeStatus, run, type RunningEdge, type RunOptions, startEdge } from "./edge.ts";
