/**
 * The edge agent's public surface: start it in-process (tests, embedding)
 * and check its configuration.
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
  parseInletFlag,
  readEdgeSecrets,
} from "./config.ts";
export { backoffMs, type EdgeStatus, type RunningEdge, startEdge } from "./edge.ts";
