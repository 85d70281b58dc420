export { TincanConfigError } from "./config.js";
export { Datapath, type DatapathOptions, VERSION, type VnicFactory, type VnicSettings } from "./datapath.js";
export { PrefixTable } from "./routes.js";
export { RpcServer } from "./rpc-server.js";
export {
  DatapathStartError,
  loadDatapathConfig,
  type RunningDatapath,
  type StartDatapathOptions,
  startDatapath,
} from "./start.js";
export { translateIpv4 } from "./translate.js";
