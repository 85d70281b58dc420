export * from "./addresses.js";
export * from "./dns.js";
export { SocialPolicy, type SocialPolicyOptions } from "./policy.js";
export * from "./state.js";
export * from "./ula.js";
