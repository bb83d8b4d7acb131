/**
 * The Nexus core library: identities, credentials and their encoding.
 * Later layers (channel, routing, transport, portal, policy) add their own
 * `mod.ts` beside these.
 *
 * @module
 */
export * from "./errors.ts";
export * from "./encoding/mod.ts";
export * from "./crypto/mod.ts";
export * from "./identity/mod.ts";
export * from "./credential/mod.ts";
