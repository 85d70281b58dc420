import { RpcErrorCode } from "@tincan/protocol";
import { JSONRPCErrorException } from "json-rpc-2.0";

export function rpcError(code: number, message: string): JSONRPCErrorException {
  return new JSONRPCErrorException(message, code);
}

export const notFound = (what: string) => rpcError(RpcErrorCode.NotFound, what);
export const conflict = (what: string) => rpcError(RpcErrorCode.Conflict, what);
export const notConfigured = (what: string) => rpcError(RpcErrorCode.NotConfigured, what);
export const invalidParams = (what: string) => rpcError(RpcErrorCode.InvalidParams, what);
export const tooManyLinks = (what: string) => rpcError(RpcErrorCode.TooManyLinks, what);
