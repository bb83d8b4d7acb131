/**
 * Configuration: the loader every executable uses (a JSON file, flags laid
 * over it, one schema per executable), the schema's building blocks, and
 * addresses as configurations write them.
 *
 * @module
 */
export { formatHostPort, type HostPort, parseHostPort } from "./host_port.ts";
export { permissionFlags, type Permissions } from "./permissions.ts";
export { checkConfig, type ConfigSource, fieldPath, loadConfig, readConfigFile } from "./loader.ts";
export {
  countOrDigits,
  flag,
  hostPort,
  identifier,
  isHostPort,
  name,
  nonEmpty,
  object,
  quoteValue,
  secret,
  wholeNumber,
  z,
} from "./schema.ts";
