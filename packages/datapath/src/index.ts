export { Datapath, VERSION, type DatapathOptions, type VnicFactory, type VnicSettings } from "./datapath.js";
export { RpcServer } from "./rpc-server.js";
export { PrefixTable } from "./routes.js";
export { translateIpv4 } from "./translate.js";
