/**
 * Configuration: addresses as configurations write them, and the Deno
 * permissions a configuration needs.
 *
 * The loader every executable uses (`loader.ts`: a JSON file, flags laid
 * over it, one schema per executable) and the schemas' building blocks
 * (`schema.ts`) serve the executables and are imported from their files:
 * they are built on zod, whose types stay out of the library's public
 * surface.
 *
 * @module
 */
export { formatHostPort, type HostPort, parseHostPort } from "./host_port.ts";
export { permissionFlags, type Permissions } from "./permissions.ts";
export { SERVICE_V8_FLAGS, serviceV8Flag } from "./runtime_flags.ts";
